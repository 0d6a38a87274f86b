"""`pvtool bench` end to end on the small guest: every field for every mode in the
JSON, and its failures as one line and a documented status."""

import json
import sys
from types import SimpleNamespace

import pytest

from pvtool.bench import command
from pvtool.bench.workloads import available_modes
from pvtool.run import Mode
from tests.cli import pvtool
from tests.oracles import QEMU, QEMU_ARGS, guest_path, require_tool
from tests.patch.tools import objdump

MODE_FIELDS = {"ok", "error", "prepare_seconds", "wall_seconds", "ratio_to_native",
               "insns_upper_bound", "insns_exact", "insns_per_second", "exits",
               "exits_total", "hypercalls", "stop", "guest_passed", "same_exits_every_run",
               "null_hypercall_cycles"}
LIMIT_FIELDS = {"register_loop", "sieve", "sieve_error", "pvtool_native", "empty_hook",
                "null_hypercall", "hypercall_over_empty_hook", "hypercall_target",
                "hypercall_within_target", "peak_memory", "peak_memory_error"}


@pytest.fixture(scope="module")
def hello_report(bench_report):
    return bench_report("hello")


def test_the_json_has_every_field_for_every_mode(hello_report):
    data, _ = hello_report
    assert data["repeat"] == 1
    assert data["modes_available"] == [m.value for m in available_modes()]
    (guest,) = data["guests"]
    assert guest["name"] == "hello"
    assert guest["operations"] == {}  # no nanobench lines: no per-operation table
    assert set(guest["modes"]) == set(data["modes_available"])
    for mode, run in guest["modes"].items():
        assert set(run) == MODE_FIELDS, mode
        assert run["ok"], (mode, run["error"])
        assert isinstance(run["guest_passed"], bool)
        assert run["wall_seconds"]["median"] > 0 and len(run["wall_seconds"]["runs"]) == 1
        assert run["insns_upper_bound"] > 0
    # trap-and-emulate is another's work in progress: only these two must pass here
    assert guest["modes"]["native"]["guest_passed"] and guest["modes"]["pv"]["guest_passed"]
    assert guest["modes"]["native"]["ratio_to_native"] == 1.0
    assert guest["modes"]["pv"]["prepare_seconds"] > 0  # patched on the fly
    assert guest["modes"]["pv"]["hypercalls"]  # it really ran under the hypervisor
    # a null hypercall is timed around each PV run, in cycles, and only there
    (cycles,) = guest["modes"]["pv"]["null_hypercall_cycles"]
    assert cycles > 0
    assert guest["modes"]["native"]["null_hypercall_cycles"] == []


def test_the_json_has_every_limit(hello_report):
    data, _ = hello_report
    limits = data["limits"]
    assert set(limits) == LIMIT_FIELDS
    assert limits["sieve"] is None and "no symbol" in limits["sieve_error"]
    assert limits["register_loop"]["final_ecx"] == 0
    assert limits["empty_hook"]["final_ecx"] == 0
    call = limits["null_hypercall"]
    assert call["counted_calls"] == call["calls"] and call["seconds_per_call"] > 0
    assert len(call["cycles"]) == len(call["seconds"]["runs"])
    assert call["cycles_per_call"] > 0
    assert limits["hypercall_over_empty_hook"] > 0
    memory = limits["peak_memory"]
    assert memory["isolated"] and memory["peak_kib"] >= memory["baseline_kib"] > 0


def test_the_tables_go_to_stdout(hello_report):
    _, stdout = hello_report
    for title in ("Guest workloads", "pvtool native vs qemu-system-i386 -kernel",
                  "Exits by kind", "Limits, measured in this run"):
        assert title in stdout
    assert "Per-operation cost" not in stdout


def test_the_patcher_row_is_in_the_json_and_the_table(hello_report):
    data, stdout = hello_report
    (row,) = data["patcher"]
    assert row["ok"] and row["image"].endswith("hello.elf")
    # gcc's guests keep no data in .text: objdump's linear listing is every instruction
    assert row["instructions"] == len(objdump(guest_path("hello")))
    assert row["seconds"] > 0 and row["peak_kib"] >= row["baseline_kib"] > 0
    assert "The patcher: pvtool patch" in stdout
    assert row["table2"]["lines"] > 0 and row["table2"]["baseline_lines"] == row["instructions"]
    assert "Xen's hand port of Linux: 2,995 lines, 1.36%" in " ".join(stdout.split())


def test_the_json_has_hello_beside_qemu(hello_report):
    require_tool(QEMU)
    data, _ = hello_report
    qemu = data["qemu"]
    assert qemu["available"] and qemu["error"] is None and qemu["args"] == list(QEMU_ARGS)
    (guest,) = data["guests"]
    row = guest["qemu"]
    assert row["ok"], row["error"]
    assert len(row["wall_seconds"]["runs"]) == len(row["startup_seconds"]["runs"]) == 1
    assert row["guest_code"] == guest["modes"]["native"]["stop"]["guest_code"] == 0
    assert row["pvtool_seconds"] == guest["modes"]["native"]["wall_seconds"]["median"]
    assert row["pvtool_over_qemu"] == pytest.approx(
        row["pvtool_seconds"] / row["wall_seconds"]["median"], rel=1e-3)


def test_trap_mode_is_benched_exactly_when_pvtool_has_it():
    assert (Mode.TRAP in available_modes()) if hasattr(Mode, "TRAP") else (
        [m.value for m in available_modes()] == ["native", "pv"])


def test_a_missing_image_is_status_66_and_one_line(tmp_path):
    done = pvtool("bench", tmp_path / "absent.elf", process=True)
    assert done.status == 66, done.stderr
    done.error_line()
    assert done.stdout == ""


def test_a_file_that_is_not_elf_is_status_65(tmp_path):
    junk = tmp_path / "junk.elf"
    junk.write_bytes(b"not an elf")
    result = pvtool("bench", junk)
    assert result.status == 65
    result.error_line()


def test_plot_without_matplotlib_is_status_69_before_measuring(tmp_path, monkeypatch,
                                                              guests):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now fails
    result = pvtool("bench", guests("hello"), "--plot", tmp_path / "chart.png")
    assert result.status == 69
    result.error_line()
    assert "pvtool[plot]" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(("args", "status"), [
    (("--plot", "chart.txt"), 64),  # the chart is a PNG: said before measuring
    (("--json", "missing/bench.json"), 73),  # no folder made: refused before measuring
    (("--plot", "missing/chart.png"), 73),
])
def test_a_bad_output_is_refused_before_measuring(tmp_path, monkeypatch, args, status):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(command, "bench", lambda *_: pytest.fail("measured"))
    done = pvtool("bench", *args, guest_path("hello"))
    assert done.status == status, done.output
    assert args[1] in done.error_line()
    assert list(tmp_path.iterdir()) == []


def test_json_dash_puts_only_the_figures_on_stdout(monkeypatch):
    """The one --json rule (tests/test_cli_json.py), here with the measuring left out."""
    figures = {"guests": [], "modes_available": ["native"]}
    measured = SimpleNamespace(to_dict=lambda: figures)
    monkeypatch.setattr(command, "bench", lambda *_: measured)
    done = pvtool("bench", "--json", "-", guest_path("hello"))
    assert done.status == 0, done.output
    assert json.loads(done.stdout) == figures
