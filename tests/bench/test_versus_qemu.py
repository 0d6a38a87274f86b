"""pvtool's native mode beside qemu-system-i386 (bench/versus_qemu.py), with the real
QEMU on small guests: the exit-at-once kernel QEMU's start-up is timed with, the row's
ratios, and the refusals (other bytes, another exit code, no QEMU). No timing is
asserted, only how the figures are made from the timings."""

import dataclasses
import json
from pathlib import Path

import pytest

from pvtool import console
from pvtool.bench import view
from pvtool.bench.exitkernel import exit_kernel
from pvtool.bench.qemu import NOT_INSTALLED, qemu_path
from pvtool.bench.versus_qemu import compare_with_qemu, find_qemu, first_difference, ratios
from pvtool.bench.workloads import ModeRuns
from pvtool.machine.stop import Stop, StopKind
from pvtool.run import Mode, RunOptions, run_image
from tests.oracles import QEMU, require_tool, run_qemu


def native_runs(image: Path) -> ModeRuns:
    """One pvtool native run of IMAGE, as bench/workloads.py records it."""
    output = bytearray()
    result = run_image(image, RunOptions(mode=Mode.NATIVE), output.extend)
    return ModeRuns(Mode.NATIVE, image, results=[result], outputs=[bytes(output)])


@pytest.fixture(scope="module")
def qemu_side(tmp_path_factory):
    require_tool(QEMU)
    return find_qemu(tmp_path_factory.mktemp("qemu"))


@pytest.fixture
def hello_native(guests) -> ModeRuns:
    return native_runs(guests("hello"))


def test_the_exit_at_once_kernel_ends_qemu_and_pvtool_alike_with_nothing_printed(tmp_path):
    kernel = tmp_path / "exit.elf"
    kernel.write_bytes(exit_kernel())
    qemu = run_qemu(kernel)
    assert (qemu.stdout, qemu.guest_code) == (b"", 0)
    native = native_runs(kernel)
    assert native.outputs == [b""]
    assert native.results[0].stop.kind is StopKind.GUEST_EXIT
    assert native.results[0].stop.code == 0


def test_qemu_is_found_and_named(qemu_side):
    data = qemu_side.to_dict()
    assert data["available"] and data["error"] is None
    assert data["version"].startswith("QEMU emulator version")


def test_a_guest_printing_the_same_bytes_gets_both_ratios(qemu_side, hello_native,
                                                          guests, tmp_path, progress):
    versus = compare_with_qemu(guests("hello"), hello_native, qemu_side, 2, tmp_path,
                               progress)
    row = versus.to_dict(hello_native)
    assert row["ok"], row["error"]
    assert row["guest_code"] == 0
    # a start-up run before each of the guest's runs
    assert len(row["wall_seconds"]["runs"]) == len(row["startup_seconds"]["runs"]) == 2
    assert progress.done == 2  # a step per run
    assert all(run.output == b"" for run in versus.startup)
    # the row's figures are made from the medians it reports
    pvtool, qemu = row["pvtool_seconds"], row["wall_seconds"]["median"]
    startup = row["startup_seconds"]["median"]
    assert row["pvtool_seconds"] == round(hello_native.timing.median, 6)
    assert row["pvtool_over_qemu"] == pytest.approx(pvtool / qemu, rel=1e-3)
    assert row["less_startup_seconds"] == pytest.approx(qemu - startup, abs=1e-5)


def test_other_bytes_on_qemu_refuse_the_ratio_and_say_where(qemu_side, hello_native,
                                                            guests, tmp_path, progress):
    printed = hello_native.outputs[0]
    hello_native.outputs[0] = printed[:10] + b"#" + printed[11:]
    versus = compare_with_qemu(guests("hello"), hello_native, qemu_side, 2, tmp_path,
                               progress)
    assert versus.runs == []  # the first run that differs ends the comparison
    assert progress.done == 2  # the second run skipped, as a step of the progress
    row = versus.to_dict(hello_native)
    assert not row["ok"] and "pvtool_over_qemu" not in row
    assert "from byte 10:" in row["error"]


def test_another_exit_code_on_qemu_refuses_the_ratio(qemu_side, tmp_path, progress):
    kernel = tmp_path / "exit.elf"
    kernel.write_bytes(exit_kernel())
    native = native_runs(kernel)
    stop = Stop(StopKind.GUEST_EXIT, "isa-debug-exit", code=3)
    native.results[0] = dataclasses.replace(native.results[0], stop=stop)
    versus = compare_with_qemu(kernel, native, qemu_side, 1, tmp_path,
                               progress)
    assert versus.error == "QEMU's guest exit code is 0, pvtool's 3"


def test_without_qemu_every_row_says_so(monkeypatch, tmp_path, hello_native, progress):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to be found
    assert qemu_path() is None
    side = find_qemu(tmp_path)
    versus = compare_with_qemu(hello_native.image, hello_native, side, 2, tmp_path,
                               progress)
    data = {"repeat": 2, "qemu": side.to_dict(),
            "guests": [{"name": "hello", "qemu": versus.to_dict(hello_native)}]}
    json.dumps(data)  # what --json writes
    assert data["qemu"]["available"] is False
    row = data["guests"][0]["qemu"]
    assert (row["ok"], row["error"]) == (False, NOT_INSTALLED)
    # hello took no device interrupt: its uncounted run is there, with no QEMU ratio
    assert row["uncounted"]["ok"] is True
    assert row["uncounted"]["over_qemu_less_startup"] is None
    with console.stdout.capture() as captured:
        console.stdout.print(view.versus_qemu_table(data))
    text = captured.get()
    assert "hello" in text and "no ratio" in text and "not installed" in text


@pytest.mark.parametrize(("pvtool", "qemu", "startup", "expected"), [
    (2.0, 1.0, 0.5, {"less_startup_seconds": 0.5, "pvtool_over_qemu": 2.0,
                     "pvtool_over_qemu_less_startup": 4.0}),
    (0.3, 0.4, 0.1, {"less_startup_seconds": 0.3, "pvtool_over_qemu": 0.75,
                     "pvtool_over_qemu_less_startup": 1.0}),
    # a run no longer than QEMU's start-up leaves nothing to divide by
    (0.2, 0.4, 0.5, {"less_startup_seconds": -0.1, "pvtool_over_qemu": 0.5,
                     "pvtool_over_qemu_less_startup": None}),
])
def test_ratios_read_both_ways(pvtool, qemu, startup, expected):
    assert ratios(pvtool, qemu, startup) == expected


@pytest.mark.parametrize(("one", "other", "at"), [
    (b"abc", b"abd", 2), (b"abc", b"abc!", 3), (b"", b"x", 0), (b"xyz", b"ayz", 0)])
def test_first_difference(one, other, at):
    assert first_difference(one, other) == at == first_difference(other, one)
