"""Xen's 64-bit PV ABI as data: the structure layouts and numbers that differ from
x86-32 (abi/xen.py and abi/layouts.py hold what the two share, and the 32-bit
layouts).

Sources: XEN-ABI64.md (sections named below) and Xen's public headers
(xen/include/public/xen.h, arch-x86/xen.h, arch-x86/xen-x86_64.h, callback.h),
with LP64 alignment: `unsigned long` and `xen_pfn_t` are 8 bytes.
"""

from enum import IntEnum

from pvtool.abi.layouts import layout
from pvtool.abi.xen import HYPERCALL_ENTRY_SIZE, HYPERCALL_PAGE_ENTRIES, Hypercall

# struct start_info (public/xen.h) on x86-64: magic[32], nr_pages, shared_info (a
# machine address), flags (u32), store_mfn, store_evtchn (u32), console.domU {mfn,
# evtchn (u32)}, pt_base, nr_pt_frames, mfn_list, mod_start, mod_len, cmd_line[1024],
# first_p2m_pfn, nr_p2m_frames.
START_INFO_64 = layout(
    "start_info_64", 1168,
    magic=(0, "32s"), nr_pages=(32, "Q"), shared_info=(40, "Q"), flags=(48, "I"),
    store_mfn=(56, "Q"), store_evtchn=(64, "I"), console_mfn=(72, "Q"),
    console_evtchn=(80, "I"), pt_base=(88, "Q"), nr_pt_frames=(96, "Q"),
    mfn_list=(104, "Q"), mod_start=(112, "Q"), mod_len=(120, "Q"),
    cmd_line=(128, "1024s"), first_p2m_pfn=(1152, "Q"), nr_p2m_frames=(1160, "Q"),
)  # fmt: skip
START_INFO_CMDLINE_SIZE = 1024

# struct vcpu_info (public/xen.h) with arch_vcpu_info {cr2, pad} of xen-x86_64.h:
# evtchn_pending_sel is an unsigned long, so cr2 sits at 16 (XEN-ABI64.md 1.5, #PF).
VCPU_INFO_64 = layout(
    "vcpu_info_64", 64,
    evtchn_upcall_pending=(0, "B"), evtchn_upcall_mask=(1, "B"),
    evtchn_pending_sel=(8, "Q"), cr2=(16, "Q"), time=(32, "32s"),
)  # fmt: skip

# trap_info (arch-x86/xen.h), 16 bytes: vector, flags (DPL in bits 0-1, bit 2 masks
# events), cs, padding, address (XEN-ABI64.md 1.5).
TRAP_INFO_64 = layout("trap_info_64", 16, vector=(0, "B"), flags=(1, "B"), cs=(2, "H"),
                      address=(8, "Q"))

# callback_register (callback.h), 16 bytes: type, flags, padding, address (1.5).
CALLBACK_REGISTER_64 = layout("callback_register_64", 16, type=(0, "H"), flags=(2, "H"),
                              address=(8, "Q"))

# mmuext_op (public/xen.h): cmd (u32), arg1 (an mfn or a linear address), arg2.
MMUEXT_OP_64 = layout("mmuext_op_64", 24, cmd=(0, "I"), arg1=(8, "Q"), arg2=(16, "Q"))

# sched_poll: ports (a guest handle, 8 bytes), nr_ports (u32), timeout (u64).
SCHED_POLL_64 = layout("sched_poll_64", 24, ports=(0, "Q"), nr_ports=(8, "I"),
                       timeout=(16, "Q"))


class SegmentBase(IntEnum):
    """HYPERVISOR_set_segment_base's `which` (xen-x86_64.h; XEN-ABI64.md 1.7)."""

    fs = 0
    gs_user = 1
    gs_kernel = 2
    gs_user_sel = 3


# HYPERVISOR_iret's flags word: return with SYSRET, discarding RCX, R11, CS, SS (1.3).
VGCF_IN_SYSCALL = 0x100

# The selectors Xen gives a 64-bit PV kernel (xen-x86_64.h): its CS and SS carry RPL 3.
FLAT_KERNEL_CS64 = 0xE033
FLAT_KERNEL_SS64 = 0xE02B
FLAT_USER_CS32 = 0xE023

# Xen's own part of every address space: L4 slots 256-271 (XEN-ABI64.md 1.8).
HYPERVISOR_VIRT_START_64 = 0xFFFF_8000_0000_0000
HYPERVISOR_VIRT_END_64 = 0xFFFF_8800_0000_0000
# The L4 slots a guest's user table may hold: the lower half (1.1; Linux's user PGD).
USER_L4_SLOTS = 256

# The hypercall page's 64-bit entries (1.2): `push rcx; push r11; mov eax, i; syscall;
# pop r11; pop rcx; ret`, and for iret `push rcx; push r11; push rax; mov eax, 23;
# syscall` (it never returns).
def _entry(number: int) -> bytes:
    mov_eax = b"\xb8" + number.to_bytes(4, "little")
    if number == Hypercall.iret:
        return bytes.fromhex("51 4153 50") + mov_eax + bytes.fromhex("0f05")
    return bytes.fromhex("51 4153") + mov_eax + bytes.fromhex("0f05 415b 59 c3")


def hypercall_page_64() -> bytes:
    """The hypercall page as Xen writes it for a 64-bit guest: 128 entries of 32 bytes,
    the rest of the page int3."""
    page = bytearray(b"\xcc" * (HYPERCALL_ENTRY_SIZE * HYPERCALL_PAGE_ENTRIES))
    for number in range(HYPERCALL_PAGE_ENTRIES):
        entry = _entry(number)
        page[HYPERCALL_ENTRY_SIZE * number:HYPERCALL_ENTRY_SIZE * number + len(entry)] = entry
    return bytes(page)
