"""Ctrl-C (SIGINT) and SIGTERM stop every run mode the same way (issue 13, item 2):
status 130 or 143, exactly pvtool's one error line on stderr (no ctypes-callback
traceback), the disk image holding what the guest wrote.

pvtool runs in a child process, so signals, statuses and stderr are the real ones. The
guest is minikern with a fresh disk: the signal is sent once it has printed that its
boot counter is written and flushed, while its processes still have most of their run
ahead (the line that ends a whole run must never appear). In trap-and-emulate mode a
hook runs on nearly every instruction, so there the signal lands inside a Unicorn
callback, where it used to be swallowed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from unicorn import UC_ARCH_X86, UC_HOOK_CODE, UC_MODE_32, Uc
from unicorn import x86_const as X

from pvtool import interrupts
from pvtool.bench.peakmemory import run_child
from pvtool.errors import OutputError
from pvtool.image import writer
from pvtool.patch import pipeline
from tests.cli import ERROR_PREFIX, Ran, command, pvtool
from tests.oracles import REPO_ROOT, guest_path

SECTOR = 512
DISK_SIZE = 256 << 10  # README: `truncate -s 256K build/disk.img`
BOOT_RECORD = b"minikern" + (1).to_bytes(4, "little")  # guests/minikern/bootcount.c
DISK_LINE = b"disk: boot count 1, written, flushed and read back ok\n"
WHOLE_RUN_LINE = b"minikern: all"  # the guest's last line: the run was not stopped
ENDINGS = {signal.SIGINT: (130, "interrupted"), signal.SIGTERM: (143, "terminated (SIGTERM)")}
SIGNAL_IDS = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
SETTLE_SECONDS = 60  # for the child to end once signalled, on a busy machine


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """minikern as each mode boots it: the Multiboot kernel, and its automatic PV port."""
    kernel = guest_path("minikern")
    patched = tmp_path_factory.mktemp("signals") / "minikern.pv.elf"
    done = pvtool("patch", kernel, "-o", patched)
    assert done.status == 0, done.output
    return {"native": kernel, "trap": kernel, "pv": patched}


MODE_FLAGS = {"native": ("--native",), "trap": ("--trap",), "pv": ()}


def run_and_signal(argv: list[str], signum: int,
                   until: Callable[[subprocess.Popen], bytes]) -> Ran:
    """Start pvtool, wait UNTIL it is ready (UNTIL gives back what it read of stdout),
    send SIGNUM, return how pvtool ended."""
    child = subprocess.Popen(argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        seen = until(child)
        child.send_signal(signum)
        stdout, stderr = child.communicate(timeout=SETTLE_SECONDS)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return Ran(child.returncode, seen + stdout, stderr)


def disk_written(child: subprocess.Popen) -> bytes:
    """Until minikern has printed its boot-counter line."""
    seen = b""
    for line in child.stdout:
        seen += line
        if line.startswith(b"disk: "):
            break
    assert seen.endswith(DISK_LINE), seen
    return seen


def handling_signals(after: float = 0.0) -> Callable[[subprocess.Popen], bytes]:
    """Until pvtool handles signals (its SigCgt in /proc, proc(5)), and AFTER seconds."""
    def until(child: subprocess.Popen) -> bytes:
        while not handles_sigterm(child.pid):
            assert child.poll() is None, child.communicate()
            time.sleep(0.01)
        time.sleep(after)
        return b""

    return until


def handles_sigterm(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1)


def assert_stopped_by(signum: int, done: Ran) -> None:
    """SIGNUM's status, and its line alone on stderr."""
    status, message = ENDINGS[signum]
    assert (done.status, done.error_line()) == (status, ERROR_PREFIX + message)


def assert_bench_stopped_by(signum: int, done: Ran) -> None:
    """SIGNUM's status, and its line last on stderr after bench's progress lines (stderr
    is not a terminal), with no other line of pvtool's or Python's. On a loaded machine
    the signal may come before the first progress line: none is required."""
    status, message = ENDINGS[signum]
    *progress, last = done.stderr.splitlines()
    assert (done.status, last) == (status, ERROR_PREFIX + message)
    assert all(line.startswith("bench: ") for line in progress), done.stderr


@pytest.mark.parametrize("signum", ENDINGS, ids=SIGNAL_IDS.get)
@pytest.mark.parametrize("mode", MODE_FLAGS)
def test_a_signal_stops_every_mode_with_one_line_and_the_disk_written(
        images, tmp_path, mode, signum):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(DISK_SIZE))
    argv = command("run", *MODE_FLAGS[mode], "--disk", disk, images[mode])
    done = run_and_signal(argv, signum, disk_written)
    assert_stopped_by(signum, done)
    assert WHOLE_RUN_LINE not in done.stdout_bytes  # stopped, not run to its end
    record = disk.read_bytes()[SECTOR:2 * SECTOR]
    assert record == BOOT_RECORD.ljust(SECTOR, b"\0")


@pytest.fixture
def handlers():
    """pvtool's SIGINT and SIGTERM handlers in this process, for one test."""
    saved = {signum: signal.getsignal(signum) for signum in ENDINGS}
    interrupts.install()
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


LOOP = bytes.fromhex("40" "ebfd")  # inc eax ; jmp back
LOOP_BASE = 0x1000


@pytest.mark.parametrize("signum", ENDINGS, ids=SIGNAL_IDS.get)
def test_a_signal_inside_a_hook_stops_the_emulator_and_is_raised_after(handlers, signum):
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(LOOP_BASE, 0x1000)
    uc.mem_write(LOOP_BASE, LOOP)
    signalled_at: list[int] = []

    def on_code(uc, address, size, _) -> None:
        eax = uc.reg_read(X.UC_X86_REG_EAX)
        if eax == 1000 and not signalled_at:
            signalled_at.append(eax)
            os.kill(os.getpid(), signum)

    uc.hook_add(UC_HOOK_CODE, on_code)
    expected = interrupts.Terminated if signum == signal.SIGTERM else interrupts.Interrupted
    with pytest.raises(expected) as raised:
        interrupts.emulate(uc, LOOP_BASE, 0, count=10_000_000)
    assert raised.type is expected
    assert signalled_at == [1000]
    assert uc.reg_read(X.UC_X86_REG_EAX) <= 1001  # stopped at once, not at the count


def test_a_signal_outside_the_emulator_is_raised_at_once(handlers):
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(SETTLE_SECONDS)


def test_a_held_block_finishes_before_the_signal_is_raised(handlers):
    finished = []
    with pytest.raises(interrupts.Terminated), interrupts.held():
        os.kill(os.getpid(), signal.SIGTERM)
        finished.append(True)
    assert finished == [True]


CAUGHT_AFTER_EXEC = """
import os, sys
from pvtool import interrupts
interrupts.install()
try:  # the code dataclasses and namedtuple make a class with is run this way
    exec("os.kill(os.getpid(), {signum})")
except KeyboardInterrupt as exc:
    sys.exit(interrupts.ending(exc)[1])
"""


@pytest.mark.parametrize("signum", ENDINGS, ids=SIGNAL_IDS.get)
def test_a_signal_caught_after_an_exec_ends_with_its_status(tmp_path, signum):
    """Run as `python -m` (Py_RunMain), as pvtool is: a signal raised inside code run
    from a string, then caught, ends with 130 or 143, not a death by SIGINT (-2)."""
    (tmp_path / "caught.py").write_text(CAUGHT_AFTER_EXEC.format(signum=int(signum)))
    done = subprocess.run([sys.executable, "-m", "caught"], cwd=tmp_path,
                          capture_output=True, timeout=SETTLE_SECONDS)
    assert (done.returncode, done.stderr) == (ENDINGS[signum][0], b"")


def test_every_emu_start_in_pvtool_goes_through_emulate():
    """One mechanism (pvtool/interrupts.py): a direct emu_start would bring the
    swallowed signal back in whatever mode or benchmark calls it."""
    package = REPO_ROOT / "pvtool"
    callers = [path.relative_to(package) for path in package.rglob("*.py")
               if ".emu_start(" in path.read_text()]
    assert callers == [Path("interrupts.py")]


def test_an_interrupted_bench_child_is_stopped_and_cleans_up(images, handlers, tmp_path,
                                                            monkeypatch):
    """`pvtool bench` measures peak memory in a child process of its own: interrupted
    while the child runs minikern, pvtool passes the signal on, and the child unwinds
    (its temporary disk and folder removed) before pvtool's own interruption goes on."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the child's temporary folder goes
    started: list[subprocess.Popen] = []

    class Recorded(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(subprocess, "Popen", Recorded)

    def signal_once_the_child_works() -> None:
        while not any(tmp_path.glob("pvtool-bench-*")):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=signal_once_the_child_works, daemon=True).start()
    with pytest.raises(interrupts.Terminated):
        run_child("pvtool.bench.peakmemory", str(images["native"]))
    assert started[0].returncode is not None  # ended, and waited for
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signum", ENDINGS, ids=SIGNAL_IDS.get)
def test_an_interrupted_patch_leaves_no_output(images, tmp_path, signum):
    """Patching minikern takes far longer than a signal takes to land: it is stopped,
    and neither the image, its diff, its report nor a temporary file is left."""
    argv = command("patch", images["native"], "-o", tmp_path / "minikern.pv.elf")
    done = run_and_signal(argv, signum, handling_signals())
    assert_stopped_by(signum, done)
    assert list(tmp_path.iterdir()) == []


def interrupt_each_unlink(monkeypatch) -> None:
    """Path.unlink sends SIGINT first, raised there at once unless held back."""
    real_unlink = Path.unlink

    def interrupted_unlink(path: Path, missing_ok: bool = False) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", interrupted_unlink)


def test_a_second_signal_waits_for_the_patch_cleanup(handlers, tmp_path, monkeypatch):
    """SIGTERM once the image and its diff are written, then SIGINT as the cleanup
    removes the first of them: both files still go, and the SIGINT is raised after."""
    real_write = pipeline.write_atomically

    def write_then_terminate(out: Path, blob: bytes, **kwargs) -> None:
        if out.suffix == ".json":  # the report: the image and the diff are written
            os.kill(os.getpid(), signal.SIGTERM)
        real_write(out, blob, **kwargs)

    monkeypatch.setattr(pipeline, "write_atomically", write_then_terminate)
    interrupt_each_unlink(monkeypatch)
    with pytest.raises(interrupts.Interrupted) as raised:
        pipeline.patch_image(guest_path("hello"), tmp_path / "hello.pv.elf")
    assert isinstance(raised.value.__context__, interrupts.Terminated)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_a_second_signal_waits_for_a_temporary_file_to_go(handlers, tmp_path, monkeypatch):
    """SIGTERM just before the rename, SIGINT as the temporary file is removed: it is
    removed all the same, and the SIGINT raised after."""
    def terminate(*_) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(writer.os, "replace", terminate)
    interrupt_each_unlink(monkeypatch)
    with pytest.raises(interrupts.Interrupted):
        writer.write_atomically(tmp_path / "out.bin", b"data")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_a_patch_cleanup_keeps_the_outputs_of_an_earlier_run(tmp_path, monkeypatch):
    """The image is replaced, its diff cannot follow: the new image goes, and the
    earlier run's diff and report, which this run never replaced, stay as they were."""
    out = tmp_path / "hello.pv.elf"
    pipeline.patch_image(guest_path("hello"), out)
    earlier = {path.name: path.read_bytes() for path in tmp_path.iterdir()}

    def refuse_the_diff(path: Path, blob: bytes, **kwargs) -> None:
        raise OutputError(f"{path}: cannot write")

    monkeypatch.setattr(pipeline, "write_atomically", refuse_the_diff)
    with pytest.raises(OutputError):
        pipeline.patch_image(guest_path("hello"), out)
    left = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert left == {name: blob for name, blob in earlier.items() if name != out.name}


@pytest.mark.parametrize("signum", ENDINGS, ids=SIGNAL_IDS.get)
def test_an_interrupted_bench_leaves_no_output(images, tmp_path, signum):
    """A second into `pvtool bench` (QEMU's first run or a guest's): stopped, and no
    JSON or chart written."""
    json_path = tmp_path / "bench.json"
    argv = command("bench", "--json", json_path, images["native"])
    done = run_and_signal(argv, signum, handling_signals(after=1.0))
    assert_bench_stopped_by(signum, done)
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []
