"""The suite's oracles: the guests as the Makefile builds them, and QEMU as the judge.

Test modules import these helpers directly (``from tests.oracles import guest_path,
run_qemu``); conftest.py also offers them as fixtures. An oracle that is missing on a
developer's machine skips its tests; in CI (the CI environment variable is set to a
non-empty value, as every CI service does) it fails them instead, so that CI never
passes by silently running less.

Under pytest-xdist every worker is a process of its own that may build the guests; a
lock on build/ makes them take turns, so two `make` never write build/ at once.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "build"
GUEST_BUILD_DIR = BUILD_DIR / "guests"
GUEST_BUILD_LOCK = BUILD_DIR / ".guests.lock"
GUEST_TOOLCHAIN = ("make", "gcc", "ld")
MAKE_TIMEOUT = 600  # seconds; building every guest from scratch takes a few

QEMU = "qemu-system-i386"
# The PC every guest is written for (DESIGN.md, "Guests"): COM1 on stdout, no display,
# no network, no reboot (a triple fault ends the run), and isa-debug-exit at 0xf4.
QEMU_ARGS = (
    "-display", "none",
    "-serial", "stdio",
    "-net", "none",
    "-no-reboot",
    "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
)  # fmt: skip


@dataclass(frozen=True)
class QemuResult:
    """How a guest's run on QEMU ended."""

    stdout: bytes  # everything the guest wrote to COM1, byte for byte
    status: int  # QEMU's exit status (negative: killed by that signal)
    guest_code: int | None  # the value written to isa-debug-exit, if the guest exited so


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def require_tool(name: str) -> str:
    """Return the path of program `name`; skip the test without it, or fail it in CI."""
    path = shutil.which(name)
    if path is not None:
        return path
    if in_ci():
        pytest.fail(
            f"{name} is not installed, and CI must run every oracle (see .ci/run)",
            pytrace=False,
        )
    pytest.skip(f"{name} is not installed")


def build_guests() -> None:
    """Run `make guests` in the repository once per session; fail with make's output."""
    for tool in GUEST_TOOLCHAIN:
        require_tool(tool)
    status, output = _make_guests()
    if status != 0:
        _fail(f"`make guests` failed with status {status}:\n{output}")


@functools.cache
def _make_guests() -> tuple[int, str]:
    """`make guests`, once per process, holding the build lock (flock(2): the kernel
    drops it if the process dies) while make runs."""
    BUILD_DIR.mkdir(exist_ok=True)
    with GUEST_BUILD_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _run_make()


def _run_make() -> tuple[int, str]:
    try:
        done = subprocess.run(
            ["make", "guests"],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=MAKE_TIMEOUT,
        )
    except subprocess.TimeoutExpired as err:
        return -1, f"(killed after {MAKE_TIMEOUT} s)\n{_text(err.output)}"
    return done.returncode, done.stdout


def guest_path(name: str) -> Path:
    """Return build/guests/NAME.elf, building the guests first if this session has not."""
    build_guests()
    path = GUEST_BUILD_DIR / f"{name}.elf"
    if not path.is_file():
        _fail(f"`make guests` did not produce {path}: is {name!r} in the Makefile's GUESTS?")
    return path


def run_qemu(
    elf: Path,
    *,
    disk: Path | None = None,
    disks: Sequence[Path] = (),
    timeout: float = 60,
    extra_args: Sequence[str] = (),
) -> QemuResult:
    """Boot `elf` with `qemu-system-i386 -kernel` and return what it printed and how it ended.

    `disk` becomes the primary ATA disk (raw); `disks` are the IDE disks in -drive
    index order (0-3), instead. A run that outlasts `timeout` seconds is killed and
    fails the test, showing what the guest had printed.
    """
    command = [require_tool(QEMU), "-kernel", str(elf), *QEMU_ARGS]
    for index, path in enumerate(disks or ([disk] if disk is not None else [])):
        # QEMU's option syntax escapes a comma in a value by doubling it.
        drive = str(path).replace(",", ",,")
        command += ["-drive", f"file={drive},format=raw,index={index},media=disk"]
    command += extra_args

    with subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as qemu:
        try:
            stdout, stderr = qemu.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            qemu.kill()
            stdout, stderr = qemu.communicate()
            _fail(
                f"QEMU was still running after {timeout} s and was killed.\n"
                f"The guest printed:\n{_text(stdout) or '(nothing)'}{_stderr_note(stderr)}"
            )
    status = qemu.returncode

    # QEMU's own failures (bad option, unloadable kernel) exit with 1, which is also
    # what a guest writing 0 to isa-debug-exit gets: QEMU's error message tells them apart.
    if status == 1 and _qemu_errors(stderr):
        _fail(f"QEMU failed to run {elf}:{_stderr_note(stderr)}")

    # isa-debug-exit ends QEMU with status (code << 1) | 1.
    guest_code = (status - 1) // 2 if status > 0 and status % 2 == 1 else None
    return QemuResult(stdout=stdout, status=status, guest_code=guest_code)


def _qemu_errors(stderr: bytes) -> list[str]:
    lines = _text(stderr).splitlines()
    return [line for line in lines if line.strip() and "warning:" not in line]


def _stderr_note(stderr: bytes) -> str:
    return f"\nQEMU's stderr:\n{_text(stderr)}" if stderr else ""


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="backslashreplace")


def _fail(message: str) -> NoReturn:
    pytest.fail(message, pytrace=False)
