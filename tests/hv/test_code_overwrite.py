"""Code the hypervisor writes over runs new: a guest calls code on a page, the
hypervisor writes other code into that page on the guest's behalf (a grant copy, a
blkback read), and the guest's next call runs the new code, as on Xen, where those
writes are the CPU's or a device's DMA and the processor sees them (Intel SDM Vol. 3A,
11.6: a write to a code page is seen by the instructions fetched after it). Unicorn
2.1.4 would keep running the blocks it translated from the old bytes: the writes go
through GuestMemory.write_phys, which has QEMU drop them (machine/memory.py)."""

import struct

import pytest

from pvtool.machine.disk import DiskImage
from tests.hv.blkfront import READ, SCRATCH, SECTOR, Frontend, Request, boot_with_disk
from tests.hv.harness import boot
from tests.machine.harness import drop_no_translated_code

OLD, NEW = 0x01D, 0x0E7
GNTTABOP_COPY = 5  # xen/include/public/grant_table.h
HC_GRANT_TABLE_OP = 20


def mov_eax_ret(value: int) -> bytes:
    """mov eax, VALUE; ret."""
    return b"\xb8" + struct.pack("<I", value) + b"\xc3"


def stores(label: str, code: bytes) -> str:
    """The guest's stores of CODE (8 bytes at most) at LABEL."""
    low, high = struct.unpack("<2I", code.ljust(8, b"\0"))
    return (f"    mov dword ptr [{label}], {low:#x}\n"
            f"    mov dword ptr [{label} + 4], {high:#x}\n")


CALL = "    mov edx, offset code\n    call edx\n    mov [{name}], eax\n"

# gnttab_copy (grant_table.h, 32-bit): source {gmfn, domid, offset}, dest {...},
# len, flags, status; both sides by frame of the domain itself (flags 0).
GRANT_COPY = f"""
    .set GNTTABOP_COPY, {GNTTABOP_COPY}
    .set HC_GRANT_TABLE_OP, {HC_GRANT_TABLE_OP}
    mov eax, offset new_code
    shr eax, 12
    mov [copy_op], eax
    mov eax, offset code
    shr eax, 12
    mov [copy_op + 8], eax
    mov ebx, GNTTABOP_COPY
    mov ecx, offset copy_op
    mov edx, 1
    call hypercall_page + HC_GRANT_TABLE_OP * 32
    mov [result], eax
    movsx eax, word ptr [copy_op + 20]
    mov [status], eax
"""
GRANT_DATA = """
    .balign 4
copy_op: .long 0
    .word DOMID_SELF, 0
    .long 0
    .word DOMID_SELF, 0
    .word 8, 0, 0x7777, 0
before: .long 0
after: .long 0
result: .long 0
status: .long 0
"""
PAGES = "    .balign 4096\ncode: .skip 4096\nnew_code: .skip 4096\n"


def grant_copy_guest(run_guest):
    text = (stores("code", mov_eax_ret(OLD)) + CALL.format(name="before")
            + stores("new_code", mov_eax_ret(NEW))
            + GRANT_COPY + CALL.format(name="after"))
    return run_guest(text, data=GRANT_DATA, bss=PAGES)


def test_code_a_grant_copy_writes_over_runs_new(run_guest):
    booted = grant_copy_guest(run_guest)
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert (booted.u32("result"), booted.u32("status")) == (0, 0)
    assert (booted.u32("before"), booted.u32("after")) == (OLD, NEW)


def test_without_the_invalidation_the_old_code_would_run(run_guest, monkeypatch):
    """What the test above proves: with QEMU's invalidation left out, the same guest
    runs the old code again, though the page holds the new."""
    drop_no_translated_code(monkeypatch)
    booted = grant_copy_guest(run_guest)
    assert (booted.u32("result"), booted.u32("status")) == (0, 0)
    assert booted.memory.read_phys(booted.addr("code"), 6) == mov_eax_ret(NEW)
    assert (booted.u32("before"), booted.u32("after")) == (OLD, OLD)


# blkback: the guest runs `code` (a page of its data pages, granted to the backend),
# reports phase 1 and waits while the test's frontend reads a sector holding new code
# into that page through blkback; then it calls the page again.
BLOCK_GUEST = (stores("data", mov_eax_ret(OLD)) + r"""
    mov edx, offset data
    call edx
    mov [before], eax
    mov dword ptr [phase], 1
wait_for_test:
    cmp dword ptr [go], 0
    je wait_for_test
    mov edx, offset data
    call edx
    mov [after], eax
""")
BLOCK_DATA = "phase: .long 0\ngo: .long 0\nbefore: .long 0\nafter: .long 0\n"


@pytest.fixture
def code_sector_disk(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(SECTOR) + mov_eax_ret(NEW).ljust(SECTOR, b"\0"))
    disk = DiskImage.open(path, snapshot=False)
    yield disk
    disk.close()


def test_code_a_blkback_read_writes_over_runs_new(build, code_sector_disk):
    booted = boot_with_disk(build(BLOCK_GUEST, data=BLOCK_DATA, bss=SCRATCH),
                            code_sector_disk)
    front = Frontend(booted)
    front.connect()
    booted.run_until("phase", 1)
    ref = front.grant_data(0)
    assert front.submit(Request(READ, 1, ((ref, 0, 0),)))[2] == 0
    booted.write_u32s("go", 1)
    booted.run()
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert (booted.u32("before"), booted.u32("after")) == (OLD, NEW)


def test_boot_leaves_the_invalidation_bound(build):
    """Every machine's memory invalidates through its own CPU's QEMU functions."""
    booted = boot(build(""))
    assert booted.memory._invalidate_code == booted.cpu.qemu.invalidate_code
