"""qemu-system-i386 as `pvtool bench` runs it: `-kernel IMAGE` with the arguments the
test suite judges pvtool by (tests/oracles.py reads them from here), timed as a whole
process, start-up included, the way a user would time it.

QEMU_ARGS describe the PC every guest is written for (DESIGN.md, "Guests"): COM1 on
stdout, no display, no network, no reboot (a triple fault ends the run), and
isa-debug-exit where pvtool's machine has it. qemu-system-x86_64 (QEMU64), the judge
of the 64-bit guests, emulates the same PC with a 64-bit CPU (qemu64) and takes the
same arguments: every function here takes the QEMU program to start, QEMU by default.
"""

import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pvtool.machine.debugexit import DEBUG_EXIT_PORT, DEBUG_EXIT_PORTS

QEMU = "qemu-system-i386"
QEMU64 = "qemu-system-x86_64"
QEMU_ARGS = (
    "-display", "none",
    "-serial", "stdio",
    "-net", "none",
    "-no-reboot",
    "-device", f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize={DEBUG_EXIT_PORTS:#04x}",
)  # fmt: skip
QEMU_BY_WIDTH = {32: QEMU, 64: QEMU64}  # the judge of a guest, by its ELF's width


def not_installed(program: str) -> str:
    return f"{program} is not installed (not found on PATH)"


NOT_INSTALLED = not_installed(QEMU)


@dataclass(frozen=True)
class QemuRun:
    """One QEMU process: what the guest wrote to COM1 and how the process ended."""

    output: bytes
    status: int  # QEMU's exit status (negative: killed by that signal)
    seconds: float  # wall time of the whole process
    stderr: str
    program: str = QEMU  # which QEMU ran, for its messages

    @property
    def guest_code(self) -> int | None:
        """The value the guest wrote to isa-debug-exit: QEMU exits with (code << 1) | 1."""
        return (self.status - 1) // 2 if self.status > 0 and self.status % 2 == 1 else None

    @property
    def failure(self) -> str | None:
        """QEMU's own failure, if any. A bad option or a kernel it cannot load exits
        with 1, as a guest writing 0 to isa-debug-exit does: its message tells them
        apart."""
        if self.status < 0:
            return f"{self.program} was killed: {self.stderr or f'signal {-self.status}'}"
        errors = [line for line in self.stderr.splitlines()
                  if line.strip() and "warning:" not in line]
        return f"{self.program}: {errors[0]}" if self.status == 1 and errors else None


def qemu_path(program: str = QEMU) -> str | None:
    return shutil.which(program)


def qemu_command(qemu: str, image: Path, disks: Sequence[Path]) -> list[str]:
    """The command line of QEMU program QEMU (QEMU or QEMU64, by name or path); DISKS
    become the IDE disks (raw) in -drive index order (0-3), as pvtool's repeated
    --disk places them."""
    command = [qemu, "-kernel", str(image), *QEMU_ARGS]
    for index, disk in enumerate(disks):
        drive = str(disk).replace(",", ",,")  # QEMU's option syntax doubles a comma
        command += ["-drive", f"file={drive},format=raw,index={index},media=disk"]
    return command


def run_qemu(qemu: str, image: Path, disk: Path | None, timeout: float) -> QemuRun:
    """Boot IMAGE on QEMU program QEMU (a path) once and time the process; a run past
    TIMEOUT seconds is killed (status -9)."""
    program = Path(qemu).name
    started = time.perf_counter()
    try:
        disks = () if disk is None else (disk,)
        done = subprocess.run(qemu_command(qemu, image, disks), stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return QemuRun(exc.stdout or b"", -9, time.perf_counter() - started,
                       f"killed after {timeout:g} s", program)
    return QemuRun(done.stdout, done.returncode, time.perf_counter() - started,
                   done.stderr.decode(errors="replace"), program)


def qemu_version(qemu: str) -> str:
    """The first line of `QEMU --version`."""
    done = subprocess.run([qemu, "--version"], capture_output=True, text=True, check=False)
    lines = done.stdout.splitlines()
    return lines[0] if lines else ""
