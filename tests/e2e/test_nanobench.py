"""guests/nanobench boots everywhere and prints one parseable line per operation:
on QEMU, on pvtool's bare PC, trap-and-emulated, and after `pvtool patch`,
paravirtualized. The figures are measurements (rdtsc, host time under pvtool) and are
only checked for shape, never for value."""

import re
from functools import partial

import pytest

from tests import cli
from tests.oracles import guest_path, run_qemu

LINE = re.compile(rb"^nanobench: (?P<op>[a-z_0-9]+) n=(?P<n>\d+) cycles=(?P<cycles>\d+)$")
OPERATIONS = {"syscall", "cli_sti", "pte_update", "cr3_switch", "port_write",
              "page_fault", "ctxswitch"}


pvtool = partial(cli.pvtool, process=True, timeout=300)


def parse(stdout: bytes) -> dict[str, tuple[int, int]]:
    lines = stdout.splitlines()
    assert lines[-1] == b"nanobench: done"
    figures = {}
    for line in lines[:-1]:
        match = LINE.match(line)
        assert match, line
        figures[match["op"].decode()] = (int(match["n"]), int(match["cycles"]))
    return figures


def check(figures: dict[str, tuple[int, int]]) -> None:
    assert set(figures) == OPERATIONS
    assert all(n > 0 for n, _ in figures.values())
    assert figures["ctxswitch"][0] == 2 * figures["syscall"][0]


@pytest.fixture(scope="module")
def nanobench():
    return guest_path("nanobench")


def test_on_qemu(nanobench):
    judge = run_qemu(nanobench, timeout=60)
    assert judge.guest_code == 0
    check(parse(judge.stdout))


@pytest.mark.parametrize("mode", ["--native", "--trap"])
def test_on_pvtool_unpatched(nanobench, mode):
    done = pvtool("run", mode, "--quiet", str(nanobench))
    assert done.status == 0, done.stderr
    check(parse(done.stdout_bytes))


def test_paravirtualized(nanobench, tmp_path):
    patched = tmp_path / "nanobench.pv.elf"
    done = pvtool("patch", str(nanobench), "-o", str(patched))
    assert done.status == 0, done.stderr
    done = pvtool("run", "--quiet", str(patched))
    assert done.status == 0, done.stderr
    check(parse(done.stdout_bytes))


def test_the_same_event_is_counted_the_same_way_in_every_mode(nanobench, tmp_path):
    """nanobench's ring-3 system calls (int 0x80) and its handled page faults are the
    same events natively, trap-and-emulated and paravirtualized: each mode counts them
    once, as delivered interrupts and exceptions. What a hypervisor did instead of a
    delivery (an emulated instruction, a page-table store) is counted apart."""
    from pvtool.patch.pipeline import patch_image
    from pvtool.run import Mode, RunOptions, run_image

    patched = tmp_path / "nanobench.pv.elf"
    patch_image(nanobench, patched)
    output = bytearray()
    runs = {mode: run_image(image, RunOptions(mode=mode), output.extend)
            for mode, image in ((Mode.NATIVE, nanobench), (Mode.TRAP, nanobench),
                                (Mode.PV, patched))}
    assert all(run.stop.code == 0 for run in runs.values())
    figures = parse(bytes(output).split(b"nanobench: done\n")[0] + b"nanobench: done\n")
    native = runs[Mode.NATIVE].exits
    assert native["interrupt"] == figures["syscall"][0] + 1  # and the SYS_DONE call
    assert native["exception"] == figures["page_fault"][0]
    for mode in (Mode.TRAP, Mode.PV):
        exits = runs[mode].exits
        assert (exits["interrupt"], exits["exception"]) == \
            (native["interrupt"], native["exception"]), mode
        assert exits["ptwr"] > 0, mode  # the PTE stores, counted as what they were
