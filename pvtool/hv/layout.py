"""Where the hypervisor keeps itself: its range of every address space, and the
machine frames behind it (which the domain never owns).

On 2-level paging (Xen 3.0's x86-32 layout) the range is 0xFC000000 up, L2 slots
1008-1023; the hypervisor's frames sit at the same physical addresses, above any
domain's RAM, so a hypervisor virtual address is also its machine address:

    +0x000000  machine-to-phys table (read-only to the guest), up to 4 MiB
    +0x400000  vCPU 0's GDT, 16 pages (read-only: the guest changes it by set_gdt)
    +0x410000  shared_info (read-write: pvtool's fixed mapping, abi/pvtool.py)
    +0x411000  trampolines: one-instruction code the CPU runs at ring 0
    +0x412000  the trampoline's frame (what its iretd pops)
    +0x413000  the page tables mapping the range, the grant table's frames, then the
               frames of the GDTs of vCPUs 1-31 (physical only)
    +0x420000  the GDTs of vCPUs 1-31, 15 pages apart, read-only: the one range whose
               virtual addresses are not the machine addresses behind them
    +0x1000000 up to +0x3000000: frames of split 4 MiB pages (physical only)

A PAE domain (today's Xen) gives the hypervisor 0xF5800000 up, L2 slots 428-511 of
the L2 under L3 slot 3. The same machine frames serve it, mapped by PAE tables of
their own: the machine-to-phys table at RO_MPT_VIRT_START (0xF5800000, slot 428) as
on Xen, and the private area at the virtual address it has on 2-level (0xFC400000,
slot 482), so the GDT, shared_info and the trampolines have one address in both
modes (abi/pvtool.py).
"""

import struct
from dataclasses import dataclass

from pvtool.abi import layouts, xen
from pvtool.abi.pvtool import (
    GLUE_WINDOW_SIZE,
    PRIVATE_AREA_OFFSET,
    SHARED_INFO_OFFSET,
    glue_window,
)
from pvtool.machine.rings import Trampoline
from pvtool.x86 import paging
from pvtool.x86.paging import PAGE_SIZE

BASE = xen.HYPERVISOR_VIRT_START_2LEVEL
FIRST_SLOT = BASE >> 22  # 1008
M2P = BASE
PRIVATE = BASE + PRIVATE_AREA_OFFSET
GDT = PRIVATE
GDT_PAGES = 16
SHARED_INFO = BASE + SHARED_INFO_OFFSET
TRAMPOLINE = SHARED_INFO + PAGE_SIZE
TRAMPOLINE_FRAMES = TRAMPOLINE + PAGE_SIZE
END = TRAMPOLINE_FRAMES + PAGE_SIZE
M2P_L1 = END  # the page tables that map the range, at the end of it
PRIVATE_L1 = END + PAGE_SIZE
GLUE_L1 = END + 2 * PAGE_SIZE  # maps a patched kernel's glue window (abi/pvtool.py)
PAE_M2P_L1 = END + 3 * PAGE_SIZE  # the PAE tables of the same range
PAE_PRIVATE_L1 = END + 4 * PAGE_SIZE
# The grant table's frames (hv/grants.py), physical only: the guest maps them itself.
# As many as Xen gives a domain by default (opt_max_grant_frames, grant_table.c).
GRANT_FRAMES = PAE_PRIVATE_L1 + PAGE_SIZE
MAX_GRANT_FRAMES = 64
# The frames of the real GDTs of vCPUs 1 up, GDT_PAGES each (vCPU 0's are GDT's own).
VCPU_GDTS = GRANT_FRAMES + MAX_GRANT_FRAMES * PAGE_SIZE
MEMORY_SIZE = VCPU_GDTS + (xen.XEN_LEGACY_MAX_VCPUS - 1) * GDT_PAGES * PAGE_SIZE - BASE
# Frames for the page tables the hypervisor splits 4 MiB pages into (hv/superpages.py),
# mapped as they are needed; physical only: no address space maps them.
SPLIT_POOL = BASE + 0x1000000
SPLIT_POOL_END = BASE + 0x3000000
PAE_BASE = xen.HYPERVISOR_VIRT_START_PAE
PAE_M2P = xen.RO_MPT_VIRT_START_PAE
PAE_FIRST_SLOT = xen.PAE_XEN_FIRST_L2_SLOT  # 428, in the L2 under L3 slot 3
PAE_L2_BASE = xen.PAE_XEN_L3_SLOT << 30  # what that L2 maps: 0xC0000000 up
PAE_ENTRIES = 512
GLUE_WINDOW = glue_window(pae=False)
# vCPU 0's vcpu_info in shared_info: what every domain's virtual IF and CR2 live in.
VCPU0 = SHARED_INFO + layouts.SHARED_INFO.offset("vcpu_info")
UPCALL_PENDING = VCPU0 + layouts.VCPU_INFO.offset("evtchn_upcall_pending")
UPCALL_MASK = VCPU0 + layouts.VCPU_INFO.offset("evtchn_upcall_mask")
VCPU_CR2 = VCPU0 + layouts.VCPU_INFO.offset("cr2")
GLUE_SLOT = GLUE_WINDOW >> 22


def in_glue_window(address: int) -> bool:
    """Whether ADDRESS is in the glue window (a patched kernel's .pvtext, .pvdata)."""
    return GLUE_WINDOW <= address < GLUE_WINDOW + GLUE_WINDOW_SIZE

# The trampoline: an iretd the CPU runs to enter a less privileged ring (the kernel's
# entry, a bounce from ring 3, a return to ring 3: machine/rings.py), and its frame.
IRETD_OFFSET = 0
IRETD = bytes.fromhex("cf")

# Hypervisor selectors in the reserved GDT page (Xen's own numbers: __HYPERVISOR_CS,
# __HYPERVISOR_DS) and the flat guest selectors from abi/xen.py.
HYPERVISOR_CS = xen.FIRST_RESERVED_GDT_BYTE + 0x08
HYPERVISOR_DS = xen.FIRST_RESERVED_GDT_BYTE + 0x10
GDT_LIMIT = xen.FLAT_RING3_DS + 7  # through the last reserved selector Xen defines
GDT_WINDOW_PAGES = 15  # the pages a GDT's limit reaches (GDT_LIMIT and layout64's)
VCPU_GDT_WINDOWS = 0x20000  # private-area offset of vCPU 1's GDT
RING_SWITCH = Trampoline(code=TRAMPOLINE + IRETD_OFFSET, frame=TRAMPOLINE_FRAMES,
                         ring0_cs=HYPERVISOR_CS, ring0_ss=HYPERVISOR_DS)

READ_ONLY = paging.P | paging.A
READ_WRITE = paging.P | paging.RW | paging.A | paging.D
L2_ENTRY = paging.P | paging.RW | paging.A | paging.D


@dataclass(frozen=True)
class HypervisorSlots:
    """The L2 entries every validated page directory gets in the hypervisor slots."""

    entries: dict[int, int]  # slot -> PDE


def reserved_gdt_entries() -> dict[int, int]:
    """Xen's reserved descriptors: ring-0 hypervisor code/data, and the flat ring-1
    and ring-3 segments guests may use (their limits stop below the hypervisor)."""
    limit_pages = (BASE >> 12) - 1
    ring0 = 0xFFFFF

    def flat(limit: int, access: int) -> int:
        return ((limit & 0xFFFF) | ((limit >> 16) & 0xF) << 48 | access << 40
                | 0xC << 52)

    return {
        HYPERVISOR_CS >> 3: flat(ring0, 0x9B),
        HYPERVISOR_DS >> 3: flat(ring0, 0x93),
        xen.FLAT_RING1_CS >> 3: flat(limit_pages, 0xBB),
        xen.FLAT_RING1_DS >> 3: flat(limit_pages, 0xB3),
        xen.FLAT_RING3_CS >> 3: flat(limit_pages, 0xFB),
        xen.FLAT_RING3_DS >> 3: flat(limit_pages, 0xF3),
    }


def vcpu_gdt(vcpu_id: int) -> int:
    """The machine address of vCPU VCPU_ID's real GDT."""
    if vcpu_id == 0:
        return GDT
    return VCPU_GDTS + (vcpu_id - 1) * GDT_PAGES * PAGE_SIZE


def vcpu_gdt_offset(vcpu_id: int) -> int:
    """Where in the private area vCPU VCPU_ID's GDT is mapped (its GDTR's base less
    PRIVATE): vCPU 0's at GDT, the others' after the trampolines, each window the
    GDT_WINDOW_PAGES that GDT_LIMIT reaches, so that all 32 fit the 2 MiB a PAE L1
    maps (Xen maps each vCPU's GDT in its own slice of the per-domain area)."""
    if vcpu_id == 0:
        return GDT - PRIVATE
    return VCPU_GDT_WINDOWS + (vcpu_id - 1) * GDT_WINDOW_PAGES * PAGE_SIZE


def gdt_windows() -> dict[int, int]:
    """Private-area page -> the GDT frame mapped there, for every vCPU's GDT."""
    return {vcpu_gdt_offset(vcpu) // PAGE_SIZE + page: vcpu_gdt(vcpu) + page * PAGE_SIZE
            for vcpu in range(xen.XEN_LEGACY_MAX_VCPUS)
            for page in range(GDT_PAGES if vcpu == 0 else GDT_WINDOW_PAGES)}


def private_l1(shared_info_writable: bool = True) -> bytes:
    """The page table mapping the private area: only shared_info is writable; the
    GDTs are read-only, since the guest changes them by hypercall."""
    entries = [0] * 1024
    for page, frame in gdt_windows().items():
        entries[page] = frame | READ_ONLY
    entries[(SHARED_INFO - PRIVATE) >> 12] = SHARED_INFO | (
        READ_WRITE if shared_info_writable else READ_ONLY)
    entries[(TRAMPOLINE - PRIVATE) >> 12] = TRAMPOLINE | READ_ONLY
    entries[(TRAMPOLINE_FRAMES - PRIVATE) >> 12] = TRAMPOLINE_FRAMES | READ_ONLY
    return struct.pack("<1024I", *entries)


def m2p_l1(m2p_pages: int) -> bytes:
    entries = [(M2P + i * PAGE_SIZE) | READ_ONLY for i in range(m2p_pages)]
    return struct.pack("<1024I", *(entries + [0] * (1024 - len(entries))))


def glue_l1(pages: list[tuple[int, bool] | None]) -> bytes:
    """The page table of the glue window: (frame, writable) for each page from its
    start, None for a page between two segments (not present); the glue is the
    kernel's, so ring 3 cannot reach it (no US bit)."""
    entries = [0 if page is None else page[0] << 12 | (READ_WRITE if page[1] else READ_ONLY)
               for page in pages]
    return struct.pack("<1024I", *(entries + [0] * (1024 - len(entries))))


def pae_m2p_l1(m2p_pages: int) -> bytes:
    entries = [(M2P + i * PAGE_SIZE) | READ_ONLY for i in range(m2p_pages)]
    return struct.pack(f"<{PAE_ENTRIES}Q", *(entries + [0] * (PAE_ENTRIES - len(entries))))


def pae_private_l1() -> bytes:
    """private_l1's entries as 8-byte PAE entries (the area is 2 MiB aligned and
    smaller than the 2 MiB one PAE L1 maps)."""
    entries = struct.unpack("<1024I", private_l1())[:PAE_ENTRIES]
    return struct.pack(f"<{PAE_ENTRIES}Q", *entries)


def _pae_slot(vaddr: int) -> int:
    return (vaddr - PAE_L2_BASE) >> 21


def pae_hypervisor_slots() -> HypervisorSlots:
    """The entries of slots 428-511 of every L2 under L3 slot 3 (the rest are 0)."""
    return HypervisorSlots({_pae_slot(PAE_M2P): PAE_M2P_L1 | L2_ENTRY,
                            _pae_slot(PRIVATE): PAE_PRIVATE_L1 | L2_ENTRY})


def hypervisor_slots(glue: bool = False) -> HypervisorSlots:
    slots = {FIRST_SLOT: M2P_L1 | L2_ENTRY, FIRST_SLOT + 1: PRIVATE_L1 | L2_ENTRY}
    if glue:
        slots[GLUE_SLOT] = GLUE_L1 | L2_ENTRY
    return HypervisorSlots(slots)
