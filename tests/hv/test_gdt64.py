"""A 64-bit domain's GDT (XEN-ABI64.md; xen/arch/x86/pv/descriptor-tables.c and
mm.c check_descriptor): set_gdt reads a list of 8-byte frame numbers, descriptors with
a DPL below the 64-bit kernel's ring (3) are raised to it, and HYPERVISOR_iret takes
the kernel's own 64-bit user code selector as Xen takes any valid one."""

import struct

import pytest

from pvtool.hv import layout
from pvtool.hv.errors import DomainCrash
from pvtool.hv.hypercalls.traps64 import iret
from pvtool.machine.cpu import RSP
from tests.hv.harness import boot, hypercall
from tests.hv.xenguest64 import PAGE, RAM, VIRT_BASE

HC_SET_GDT = 2
# Descriptors as a bare-metal x86-64 kernel writes them (SDM Vol. 3A, 3.4.5): flat,
# present, accessed; code with L, data writable.
KERNEL_CODE64 = 0x00AF_9B00_0000_FFFF  # DPL 0
USER_CODE32 = 0x00CF_FB00_0000_FFFF  # DPL 3, D: compatibility mode
USER_DATA = 0x00CF_F300_0000_FFFF  # DPL 3
USER_CODE64 = 0x00AF_FB00_0000_FFFF  # DPL 3, L
# Selector n * 8 | RPL, the table at 1 (0x08), 3 (0x1b), 4 (0x23), 5 (0x2b), and one
# entry in the second frame, 512.
TABLE = {1: KERNEL_CODE64, 3: USER_CODE32, 4: USER_DATA, 5: USER_CODE64, 512: USER_DATA}
SCRATCH = """
    .balign 4096
gdt_frames: .skip 4096
gdt_pages: .skip 8192
"""


def booted_with_gdt(build64):
    guest = build64("", bss=SCRATCH)
    booted = boot(guest, ram=RAM)
    table = bytearray(2 * PAGE)
    for index, desc in TABLE.items():
        struct.pack_into("<Q", table, 8 * index, desc)
    booted.write("gdt_pages", bytes(table))
    first = booted.addr("gdt_pages") // PAGE
    booted.write("gdt_frames", struct.pack("<2Q", first, first + 1))
    assert hypercall(booted, HC_SET_GDT, guest["gdt_frames"], 513) == 0
    return booted, (first, first + 1)


def installed(booted, index: int) -> int:
    return struct.unpack("<Q", booted.memory.read_phys(layout.GDT + 8 * index, 8))[0]


def test_set_gdt_reads_8_byte_frame_numbers(build64):
    booted, frames = booted_with_gdt(build64)
    assert booted.domain.gdt.frames == frames
    assert installed(booted, 512) == TABLE[512]  # from the second frame


def test_descriptors_below_the_64_bit_kernels_ring_are_raised_to_dpl_3(build64):
    booted, _ = booted_with_gdt(build64)
    assert (installed(booted, 1) >> 45) & 3 == 3
    assert installed(booted, 1) == KERNEL_CODE64 | 3 << 45
    assert installed(booted, 5) == USER_CODE64


def iret_to(booted, cs: int) -> str:
    """HYPERVISOR_iret with a frame to user mode at CS, on the guest's stack: the
    reason the domain is crashed for."""
    rsp = booted.guest["stack_top"] - 0x100
    frame = struct.pack("<9Q", 0, 0, 0, 0, VIRT_BASE + 0x1000, cs, 0x202, rsp, 0x2B)
    booted.memory.write_phys(rsp - VIRT_BASE, frame)
    booted.cpu.write(RSP, rsp)
    with pytest.raises(DomainCrash) as crash:
        iret(booted.domain, booted.domain.vcpu, ())
    return crash.value.reason


def test_iret_takes_the_kernels_64_bit_user_code_selector(build64):
    """The guest has no user L4 yet: the return passes the CS check and stops at the
    user L4's, as Xen's does."""
    booted, _ = booted_with_gdt(build64)
    assert "no user page tables" in iret_to(booted, 0x2B)


@pytest.mark.parametrize("cs", [0x1B, 0x23])  # compatibility-mode code, data
def test_iret_refuses_a_compatibility_mode_or_data_selector(build64, cs):
    booted, _ = booted_with_gdt(build64)
    assert f"HYPERVISOR_iret to cs {cs:#x}" in iret_to(booted, cs)
