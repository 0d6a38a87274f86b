"""hello booted natively by pvtool next to QEMU: the same bytes on the serial line and
the same exit code (DESIGN.md: QEMU is the judge)."""

from functools import partial

from tests import cli
from tests.oracles import guest_path, run_qemu

pvtool_run = partial(cli.pvtool, "run", process=True, timeout=60)


def test_native_hello_prints_qemus_bytes_and_exits_with_qemus_guest_code():
    elf = guest_path("hello")
    judge = run_qemu(elf, timeout=30)

    done = pvtool_run("--native", "--quiet", str(elf))

    assert done.stdout_bytes == judge.stdout
    assert judge.guest_code is not None
    assert done.status == judge.guest_code
    assert done.stderr_bytes == b""  # a guest that exits on purpose: nothing from pvtool


def test_two_native_runs_of_hello_print_identical_bytes():
    elf = guest_path("hello")
    first, second = pvtool_run("--native", str(elf)), pvtool_run("--native", str(elf))
    assert first.stdout_bytes == second.stdout_bytes
    assert first.stdout_bytes.count(b"\n") >= 2
    assert first.status == second.status == 0
