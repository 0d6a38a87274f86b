"""hello booted natively by pvtool next to QEMU: the same bytes on the serial line and
the same exit code (DESIGN.md: QEMU is the judge)."""

import subprocess
import sys

from tests.oracles import REPO_ROOT, guest_path, run_qemu


def pvtool_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pvtool", "run", *args], cwd=REPO_ROOT,
                          capture_output=True, timeout=60)


def test_native_hello_prints_qemus_bytes_and_exits_with_qemus_guest_code():
    elf = guest_path("hello")
    judge = run_qemu(elf, timeout=30)

    done = pvtool_run("--native", "--quiet", str(elf))

    assert done.stdout == judge.stdout
    assert judge.guest_code is not None
    assert done.returncode == judge.guest_code
    assert done.stderr == b""  # a guest that exits on purpose: nothing from pvtool


def test_two_native_runs_of_hello_print_identical_bytes():
    elf = guest_path("hello")
    first, second = pvtool_run("--native", str(elf)), pvtool_run("--native", str(elf))
    assert first.stdout == second.stdout
    assert first.stdout.count(b"\n") >= 2
    assert first.returncode == second.returncode == 0
