"""qemu-system-x86_64 as the judge of the 64-bit PC, until tests/oracles.py's run_qemu
takes the machine (guests64's branch adds it): the same command line as the i386
PC's (QEMU_ARGS), only the binary differs."""

import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from pvtool.machine.stop import StopKind
from tests.machine.harness import NativeRun
from tests.oracles import QEMU_ARGS, QEMU_INT_LINE, QemuResult, require_tool

QEMU64 = "qemu-system-x86_64"


def run_qemu64(elf: Path, *extra_args: str, timeout: float = 30) -> QemuResult:
    """Boot ELF with `qemu-system-x86_64 -kernel` and say what it printed and how it
    ended (a run past TIMEOUT seconds fails the test)."""
    command = [require_tool(QEMU64), "-kernel", str(elf), *QEMU_ARGS, *extra_args]
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{QEMU64} still ran after {timeout} s; the guest printed "
                    f"{exc.stdout!r}", pytrace=False)
    status = done.returncode
    if status == 1 and done.stderr.strip():
        pytest.fail(f"{QEMU64} failed: {done.stderr.decode(errors='replace')}", pytrace=False)
    guest_code = (status - 1) // 2 if status > 0 and status % 2 == 1 else None
    return QemuResult(stdout=done.stdout, status=status, guest_code=guest_code)


def qemu64_int_log(elf: Path) -> list[str]:
    """QEMU's `-d int` lines in `pvtool run --trace-int`'s form (tests/oracles.py's
    qemu_int_log, on the x86_64 PC)."""
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "int.log"
        run_qemu64(elf, "-d", "int", "-D", str(log))
        lines = log.read_text().splitlines()
    return [re.sub(r" pc=\S+", "", line).replace("env->regs[R_EAX]=", "EAX=")
            for line in lines if QEMU_INT_LINE.match(line)]


def assert_same_as_qemu64(run: NativeRun) -> QemuResult:
    """qemu-system-x86_64, booting the same guest, prints the same bytes and ends the
    same way (a debug exit with the same code, or a triple fault)."""
    judge = run_qemu64(run.guest.elf)
    assert bytes(run.output) == judge.stdout
    if run.stop.kind is StopKind.GUEST_EXIT:
        assert judge.guest_code == run.stop.code
    else:
        assert run.stop.kind is StopKind.TRIPLE_FAULT
        assert (judge.status, judge.guest_code) == (0, None)
    return judge
