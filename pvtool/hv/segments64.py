"""The segment registers of a 64-bit PV vCPU: Xen's flat code segments as CPU caches
(64-bit, and compat for 32-bit user code), and the data selectors Xen reloads when a
vCPU comes onto a CPU.

Unicorn's register writes cannot load a segment in 64-bit mode (they store the
selector only, XEN-ABI64.md 2.1), so a change of code size, into compatibility mode
and back, edits the CPU's caches and hidden flags (Cpu.load_segments).

Xen's load_segments (xen/arch/x86/domain.c) runs on every context switch to a PV
vCPU: it loads each of DS, ES, FS and GS that is not null with the selector the vCPU
had, from the descriptor tables as they are now. A load that faults leaves the null
selector, and the vCPU is then sent to its failsafe callback (hv/bounce64.py). A
non-null FS or GS takes its base from the descriptor ("non-nul selector kills
fs_base"), and GS's is the user's, since Xen loads it before the kernel's swapgs.
"""

import struct
from dataclasses import dataclass

from pvtool.abi.xen64 import FLAT_RING3_CS32, FLAT_RING3_CS64, FLAT_RING3_SS64
from pvtool.hv import layout64
from pvtool.hv.gdt import Gdt
from pvtool.hv.vcpu64 import Vcpu64
from pvtool.machine.context import (
    DS_INDEX,
    ES_INDEX,
    FS_INDEX,
    GS_INDEX,
    SegmentCache,
)
from pvtool.machine.cpu import DS, ES, FS, GS, GS_BASE, Cpu
from pvtool.x86.descriptors import SegmentDescriptor


def _flat(selector: int) -> SegmentCache:
    """The cache a load of one of Xen's reserved flat selectors leaves."""
    raw = layout64.reserved_gdt_entries()[selector >> 3]
    return SegmentCache.of(selector, SegmentDescriptor.decode(struct.pack("<Q", raw)))


CODE64, CODE32, STACK = (_flat(FLAT_RING3_CS64), _flat(FLAT_RING3_CS32),
                         _flat(FLAT_RING3_SS64))
# The data segment registers as Xen's load_segments takes them, with QEMU's index.
DATA_SEGMENTS = (("ds", DS, DS_INDEX), ("es", ES, ES_INDEX), ("fs", FS, FS_INDEX),
                 ("gs", GS, GS_INDEX))


def is_compat(cs: int) -> bool:
    """Whether CS is Xen's compat user code segment: 32-bit code at CPL 3."""
    return cs & 0xFFFF == FLAT_RING3_CS32


def enter_compat(cpu: Cpu) -> None:
    """Run 32-bit user code on FLAT_USER_CS32 (HYPERVISOR_iret to compat code): the
    caller writes RIP next, so that Unicorn translates again."""
    cpu.load_segments(CODE32, STACK)


def leave_compat(cpu: Cpu) -> None:
    """Back to 64-bit code on FLAT_KERNEL_CS64 (a bounce from compat user code)."""
    cpu.load_segments(CODE64, STACK)


@dataclass(frozen=True)
class DataSelectors:
    """The four selectors load_segments found, and whether each loaded."""

    ds: int
    es: int
    fs: int
    gs: int
    all_loaded: bool


def load_data_segments(cpu: Cpu, gdt: Gdt, state: Vcpu64) -> DataSelectors:
    """Reload the vCPU's DS, ES, FS and GS from the GDT as it is now (load_segments);
    a selector whose load faults becomes null (loadsegment's fixup). Null selectors
    are left as they are, bases included (Xen restores those from the vCPU)."""
    selectors = {name: cpu.read(reg) for name, reg, _ in DATA_SEGMENTS}  # in place
    caches, loaded = {}, True
    for name, _, index in DATA_SEGMENTS:
        selector = selectors[name]
        if selector & ~3:
            descriptor = gdt.data_descriptor(selector)
            loaded &= descriptor is not None
            caches[index] = _cache(cpu, state, index, selector, descriptor)
    if caches:
        cpu.load_segment_caches(caches)
    return DataSelectors(**selectors, all_loaded=loaded)


def _cache(cpu: Cpu, state: Vcpu64, index: int, selector: int,
           descriptor: SegmentDescriptor | None) -> SegmentCache:
    """The cache SELECTOR leaves in register INDEX: the null one where it faults.
    In kernel mode the GS base loaded is the user's, kept beside the kernel's."""
    cache = SegmentCache(0, 0, 0, 0) if descriptor is None \
        else SegmentCache.of(selector, descriptor)
    if index == GS_INDEX and state.kernel_mode:
        state.inactive_gs_base = cache.base
        return SegmentCache(cache.selector, cpu.read(GS_BASE), cache.limit, cache.flags)
    return cache

