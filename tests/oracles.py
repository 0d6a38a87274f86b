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
import re
import select
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

# QEMU's command line (the PC every guest is written for) is defined once, where
# `pvtool bench` runs QEMU too; QEMU_ARGS and QEMU64 (qemu-system-x86_64, the judge of
# the 64-bit guests) are named here for the test modules.
from pvtool.bench.qemu import QEMU, qemu_command
from pvtool.bench.qemu import QEMU64 as QEMU64
from pvtool.bench.qemu import QEMU_ARGS as QEMU_ARGS

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "build"
GUEST_BUILD_DIR = BUILD_DIR / "guests"
GUEST_BUILD_LOCK = BUILD_DIR / ".guests.lock"
GUEST_TOOLCHAIN = ("make", "gcc", "ld")
MAKE_TIMEOUT = 600  # seconds; building every guest from scratch takes a few



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
    input_data: bytes | None = None,
    qemu: str = QEMU,
) -> QemuResult:
    """Boot `elf` with `qemu-system-i386 -kernel` and return what it printed and how it ended.

    `disk` becomes the primary ATA disk (raw); `disks` are the IDE disks in -drive
    index order (0-3), instead; `input_data` is what COM1 receives; `qemu` is the QEMU
    to start (QEMU64 for a 64-bit guest). A run that outlasts `timeout` seconds is
    killed and fails the test, showing what the guest had printed.
    """
    drives = disks or ([disk] if disk is not None else [])
    command = [*qemu_command(require_tool(qemu), elf, drives), *extra_args]

    stdin = subprocess.DEVNULL if input_data is None else subprocess.PIPE
    with subprocess.Popen(
        command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as qemu:
        try:
            stdout, stderr = qemu.communicate(input_data, timeout=timeout)
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


# QEMU's `-d int` line (target/i386/tcg/seg_helper.c, do_interrupt_all), one per
# interrupt or exception delivered in protected mode.
QEMU_INT_LINE = re.compile(r"^\s*\d+: v=\S+ e=\S+ i=\d cpl=\d IP=\S+ pc=\S+ SP=\S+ \S+=\S+$")


def qemu_int_log(elf: Path, *, timeout: float = 60, qemu: str = QEMU) -> list[str]:
    """The deliveries QEMU logs with `-d int` booting `elf`, in `pvtool run --trace-int`'s
    form: QEMU's lines without `pc=` (CS's base), `env->regs[R_EAX]=` spelt `EAX=`."""
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "int.log"
        run_qemu(elf, timeout=timeout, extra_args=("-d", "int", "-D", str(log)), qemu=qemu)
        lines = log.read_text().splitlines()
    return [re.sub(r" pc=\S+", "", line).replace("env->regs[R_EAX]=", "EAX=")
            for line in lines if QEMU_INT_LINE.match(line)]


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


class QemuSession:
    """A guest on QEMU driven through its human monitor (a Unix socket), for guests
    that wait for keys or whose screen must be read before they leave: wait for a
    line on COM1, read guest memory (`pmemsave`), type keys (`sendkey`), then collect
    how the run ended as run_qemu does. DISKS, INPUT_DATA and QEMU are run_qemu's
    `disks`, `input_data` (COM1 receives the input at once) and `qemu`."""

    def __init__(self, elf: Path, workdir: Path, *, timeout: float = 60,
                 disks: Sequence[Path] = (), input_data: bytes | None = None,
                 qemu: str = QEMU):
        self.socket_path = workdir / "monitor.sock"
        self.socket_path.unlink(missing_ok=True)  # a socket left by an earlier run
        self.workdir = workdir
        self.timeout = timeout
        self.output = bytearray()
        command = [*qemu_command(require_tool(qemu), elf, disks),
                   "-monitor", f"unix:{self.socket_path},server,nowait"]
        stdin = subprocess.DEVNULL if input_data is None else subprocess.PIPE
        self.qemu = subprocess.Popen(command, stdin=stdin,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if input_data is not None:
            self.qemu.stdin.write(input_data)  # finish() closes the pipe
            self.qemu.stdin.flush()
        self.deadline = time.monotonic() + timeout
        self.monitor = self._connect()

    def __enter__(self) -> QemuSession:
        return self

    def __exit__(self, *exc_info) -> None:
        """QEMU never outlives the test, however the test ended."""
        if self.qemu.poll() is None:
            self.qemu.kill()
            self.qemu.communicate()

    def _connect(self) -> socket.socket:
        """QEMU binds the socket (the file appears) a moment before it listens: until
        then a connection is refused, so try again."""
        while True:
            self._check_time("the monitor socket")
            monitor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                monitor.connect(str(self.socket_path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                monitor.close()
                time.sleep(0.05)
        self._read_monitor(monitor)  # the banner and the first prompt
        return monitor

    def _check_time(self, what: str) -> None:
        if time.monotonic() > self.deadline:
            self.qemu.kill()
            _fail(f"QEMU: no {what} after {self.timeout} s; the guest printed:\n"
                  f"{_text(bytes(self.output)) or '(nothing)'}")

    def wait_for(self, line: bytes) -> None:
        """Read COM1 until LINE has been printed."""
        while line not in self.output:
            self._check_time(repr(line))
            ready, _, _ = select.select([self.qemu.stdout], [], [], 0.1)
            if ready:
                chunk = os.read(self.qemu.stdout.fileno(), 4096)
                if not chunk:
                    _fail(f"QEMU ended before the guest printed {line!r}:\n"
                          f"{_text(bytes(self.output))}")
                self.output += chunk

    def command(self, text: str) -> str:
        self.monitor.sendall(text.encode() + b"\n")
        return self._read_monitor(self.monitor)

    def _read_monitor(self, monitor: socket.socket) -> str:
        reply = bytearray()
        while not reply.endswith(b"(qemu) "):
            self._check_time("monitor prompt")
            chunk = monitor.recv(4096)
            if not chunk:
                break
            reply += chunk
        return _text(bytes(reply))

    def read_memory(self, address: int, size: int) -> bytes:
        """Physical memory, through `pmemsave` into a file."""
        dump = self.workdir / f"pmem-{address:x}-{size:x}.bin"
        self.command(f'pmemsave {address:#x} {size} "{dump}"')  # unquoted, "/" divides
        return dump.read_bytes()

    def send_keys(self, keys: Sequence[str]) -> None:
        """`sendkey` each of KEYS (QEMU's key names, as `shift-h`), one after another."""
        for key in keys:
            self.command(f"sendkey {key}")

    def finish(self) -> QemuResult:
        """Wait for the guest to leave; what it printed and how it ended."""
        self.monitor.close()
        try:
            rest, stderr = self.qemu.communicate(timeout=max(self.deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            self.qemu.kill()
            rest, stderr = self.qemu.communicate()
            _fail(f"QEMU was still running after {self.timeout} s and was killed.\n"
                  f"The guest printed:\n{_text(bytes(self.output) + rest)}")
        status = self.qemu.returncode
        guest_code = (status - 1) // 2 if status > 0 and status % 2 == 1 else None
        return QemuResult(stdout=bytes(self.output) + rest, status=status,
                          guest_code=guest_code)
