"""Durability (issue 7): a guest's disk writes reach the disk file however the run
ends: the guest exits, the guest crashes (a triple fault after its write), pvtool is
interrupted with SIGINT (Ctrl-C) or SIGTERM mid-run; with --snapshot the file is never
written (its bytes and its mtime stay).

The guest is a bare Multiboot kernel that writes one sector with ATA PIO (WRITE
SECTORS, then FLUSH CACHE), prints "written" on COM1 and then ends as the test asks.
pvtool runs in a child process so signals, exit statuses and stderr are the real ones.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli import Ran, command, pvtool
from tests.guests_asm.build import BARE, GuestBuilder
from tests.oracles import REPO_ROOT

SECTOR = 512
PAYLOAD = bytes((i * 7 + 3) & 0xFF for i in range(SECTOR))
LBA = 1
INTERRUPTED, TERMINATED, CRASHED = 130, 143, 71

WRITER = BARE + """
    mov $stack_top, %esp
    mov $0x1F6, %dx
    mov $0xE0, %al              # LBA mode, device 0
    out %al, %dx
    mov $0x1F2, %dx
    mov $1, %al                 # one sector
    out %al, %dx
    mov $0x1F3, %dx
    mov $LBA, %al               # LBA bits 0-7
    out %al, %dx
    xor %al, %al
    mov $0x1F4, %dx
    out %al, %dx
    mov $0x1F5, %dx
    out %al, %dx
    mov $0x1F7, %dx
    mov $0x30, %al              # WRITE SECTORS
    out %al, %dx
1:  in %dx, %al                 # wait for DRQ
    test $0x08, %al
    jz 1b
    mov $payload, %esi
    mov $128, %ecx
    mov $0x1F0, %dx
    rep outsl
    mov $0x1F7, %dx
2:  in %dx, %al                 # wait until not busy
    test $0x80, %al
    jnz 2b
    mov $0xE7, %al              # FLUSH CACHE
    out %al, %dx
3:  in %dx, %al
    test $0x80, %al
    jnz 3b
    mov $message, %esi
    mov $0x3F8, %dx
4:  lodsb
    test %al, %al
    jz 5f
    out %al, %dx
    jmp 4b
5:
    THEN
    .data
payload:
    .byte PAYLOAD
message:
    .asciz "written\\n"
    .align 4
    .word 0
empty_idt:
    .word 0
    .long 0
    .bss
    .skip 4096
stack_top:
"""

ENDINGS = {
    "exit": "mov $0xf4, %dx\n    mov $0, %al\n    out %al, %dx\n    hlt",
    "crash": "lidt empty_idt\n    int3",  # no IDT: #GP, #DF, triple fault
    "spin": "6:  jmp 6b",
}


@pytest.fixture(scope="module")
def writers(tmp_path_factory):
    builder = GuestBuilder(tmp_path_factory.mktemp("durability-guests"))
    source = WRITER.replace("LBA", str(LBA)).replace(
        "PAYLOAD", ", ".join(str(b) for b in PAYLOAD))
    return {name: builder.build(source.replace("THEN", ending), runtime=False).elf
            for name, ending in ENDINGS.items()}


@pytest.fixture
def disk(tmp_path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(b"\xEE" * (8 * SECTOR))
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    return path


def run_args(image: Path, disk: Path, *extra: str) -> tuple[object, ...]:
    return ("run", "--native", "--quiet", "--disk", disk, *extra, image)


def sector(disk: Path, lba: int) -> bytes:
    return disk.read_bytes()[lba * SECTOR:(lba + 1) * SECTOR]


def assert_written(disk: Path) -> None:
    assert sector(disk, LBA) == PAYLOAD
    assert sector(disk, 0) == b"\xEE" * SECTOR  # and nothing else
    assert sector(disk, LBA + 1) == b"\xEE" * SECTOR


def test_a_write_reaches_the_file_when_the_guest_exits(writers, disk):
    done = pvtool(*run_args(writers["exit"], disk), process=True, timeout=60)
    assert done.status == 0, done.stderr
    assert done.stdout == "written\n"
    assert_written(disk)


def test_a_write_reaches_the_file_when_the_guest_then_crashes(writers, disk):
    done = pvtool(*run_args(writers["crash"], disk), process=True, timeout=60)
    assert done.status == CRASHED, done.stderr
    assert "triple-fault" in done.error_line()
    assert_written(disk)


def run_then_signal(image: Path, disk: Path, signum: int, *extra: str) -> Ran:
    """Start pvtool, wait for the guest's "written", send SIGNUM, return the result."""
    child = subprocess.Popen(command(*run_args(image, disk, *extra)), cwd=REPO_ROOT,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        line = child.stdout.readline()
        assert line == b"written\n", (line, child.stderr.read() if child.poll() else b"")
        time.sleep(0.2)  # well into the spin loop
        child.send_signal(signum)
        stdout, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return Ran(child.returncode, stdout, stderr)


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, INTERRUPTED),
                                            (signal.SIGTERM, TERMINATED)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_write_reaches_the_file_when_pvtool_is_interrupted(writers, disk, signum, status):
    done = run_then_signal(writers["spin"], disk, signum)
    assert done.status == status, done.stderr
    line = done.error_line()
    assert ("terminated" if signum == signal.SIGTERM else "interrupted") in line
    assert_written(disk)


@pytest.mark.parametrize("ending, signum", [("exit", None), ("crash", None),
                                            ("spin", signal.SIGINT),
                                            ("spin", signal.SIGTERM)])
def test_a_snapshot_never_writes_the_file(writers, disk, ending, signum):
    before = disk.read_bytes()
    if signum is None:
        pvtool(*run_args(writers[ending], disk, "--snapshot"), process=True, timeout=60)
    else:
        run_then_signal(writers[ending], disk, signum, "--snapshot")
    assert disk.read_bytes() == before
    assert disk.stat().st_mtime_ns == 1_000_000_000
