"""Descriptor-table hypercalls: set_gdt and update_descriptor (hv/gdt.py checks)."""

import struct

from pvtool.abi.xen import FIRST_RESERVED_GDT_ENTRY, Errno
from pvtool.hv.domain import PvDomain, VCpu
from pvtool.hv.errors import HypercallError
from pvtool.hv.gdt import ENTRIES_PER_FRAME

MAX_FRAMES = -(-FIRST_RESERVED_GDT_ENTRY // ENTRIES_PER_FRAME)


def set_gdt(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    frames_ptr, entries = args[0], args[1]
    nr_frames = -(-entries // ENTRIES_PER_FRAME)
    if nr_frames > MAX_FRAMES:
        raise HypercallError(Errno.EINVAL, f"{entries} GDT entries")
    # The frame list holds xen_pfn_t: 4 bytes for a 32-bit guest, 8 for a 64-bit one.
    size = dom.machine.cpu.bits // 8
    raw = dom.copy_from_guest(frames_ptr, size * nr_frames)
    frames = struct.unpack(f"<{nr_frames}{'Q' if size == 8 else 'I'}", raw)
    dom.gdt.set_gdt(frames, entries)
    return 0


def update_descriptor(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    ma_lo, ma_hi, desc_lo, desc_hi = args[:4]
    if ma_hi:
        raise HypercallError(Errno.EINVAL, "machine address above 4 GiB")
    dom.gdt.update_descriptor(ma_lo, (desc_hi & 0xFFFFFFFF) << 32 | desc_lo & 0xFFFFFFFF)
    return 0


def update_descriptor_64(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    """A 64-bit guest passes the machine address and the descriptor whole, one register
    each (Xen's do_update_descriptor(uint64_t gaddr, seg_desc_t d); the halves are the
    32-bit compat form)."""
    machine_address, desc = args[:2]
    dom.gdt.update_descriptor(machine_address, desc)
    return 0
