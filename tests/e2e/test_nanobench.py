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
