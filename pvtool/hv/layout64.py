"""The hypervisor's part of a 64-bit domain's address space: Xen's L4 slots 256-271
(XEN-ABI64.md 1.8), and the machine frames behind what pvtool maps there.

Two of Xen's slots are filled into every L4 the validator accepts:

    slot 256  0xFFFF800000000000  the machine-to-phys table, 8 bytes a frame,
                                  read-only and guest-readable (U at every level), NX
    slot 260  0xFFFF820000000000  the private area, supervisor-only (U=0 in the L4
                                  entry): the GDT (16 pages), the iretq trampoline and
                                  its frame, at the offsets they have in the 32-bit
                                  private area (abi/pvtool.py)

A 64-bit guest kernel runs at CPL 3, so U=0 alone keeps the whole guest out of slot
260 (XEN-ABI64.md 2.2). Xen's other slots (its linear page table, per-domain
mappings beyond the GDT, its text and direct map) hold nothing a guest can reach, and
pvtool leaves them empty.

The GDT and the trampoline pages are the 32-bit private area's own frames (hv/layout.py);
the 64-bit M2P and the tables mapping both slots sit above the frames split 4 MiB
pages use, below 4 GiB, where the frame table gives them to DOMID_XEN.
"""

import struct

from pvtool.abi import xen64
from pvtool.hv import layout
from pvtool.machine.pc import MAX_RAM
from pvtool.machine.rings import IretqTrampoline
from pvtool.x86 import paging
from pvtool.x86.descriptors import ACCESSED, CODE_RX, DATA_RW, SegmentDescriptor
from pvtool.x86.paging import PAGE_SIZE

ENTRIES = 512
L4_SPAN = 1 << 39  # what one L4 slot maps
L1_SPAN = 2 << 20  # what one L1 maps

# Virtual addresses.
M2P = xen64.RO_MPT_VIRT_START_64
PRIVATE = xen64.HYPERVISOR_VIRT_START_64 + \
    (xen64.PERDOMAIN_L4_SLOT - xen64.XEN_L4_SLOTS[0]) * L4_SPAN
GDT = PRIVATE + (layout.GDT - layout.PRIVATE)
TRAMPOLINE = PRIVATE + (layout.TRAMPOLINE - layout.PRIVATE)
TRAMPOLINE_FRAME = PRIVATE + (layout.TRAMPOLINE_FRAMES - layout.PRIVATE)
IRETQ_OFFSET = 0x10  # in the trampoline page, after the 32-bit iretd
IRETQ = bytes.fromhex("48cf")

# Machine frames (physical addresses), DOMID_XEN's.
MAX_M2P_BYTES = 8 * (MAX_RAM // PAGE_SIZE)  # 8 bytes a frame of the most RAM (6 MiB)
M2P_FRAMES = layout.SPLIT_POOL_END
M2P_L1_TABLES = MAX_M2P_BYTES // L1_SPAN
TABLES = M2P_FRAMES + MAX_M2P_BYTES
M2P_L3 = TABLES
M2P_L2 = M2P_L3 + PAGE_SIZE
M2P_L1 = M2P_L2 + PAGE_SIZE  # M2P_L1_TABLES of them
PRIVATE_L3 = M2P_L1 + M2P_L1_TABLES * PAGE_SIZE
PRIVATE_L2 = PRIVATE_L3 + PAGE_SIZE
PRIVATE_L1 = PRIVATE_L2 + PAGE_SIZE
MEMORY_BASE = M2P_FRAMES
MEMORY_SIZE = PRIVATE_L1 + PAGE_SIZE - MEMORY_BASE

# The hypervisor's selectors in its reserved GDT page (hv/layout.py's numbers).
HYPERVISOR_CS = layout.HYPERVISOR_CS
HYPERVISOR_DS = layout.HYPERVISOR_DS
GDT_LIMIT = xen64.FLAT_RING3_CS64 + 7
RING_SWITCH = IretqTrampoline(code=TRAMPOLINE + IRETQ_OFFSET, frame=TRAMPOLINE_FRAME,
                              frame_phys=layout.TRAMPOLINE_FRAMES,
                              ring0_cs=HYPERVISOR_CS, ring0_ss=HYPERVISOR_DS)

_UPPER_READ_ONLY = paging.P | paging.US | paging.A
_M2P_PAGE = paging.P | paging.US | paging.A | paging.NX
_PRIVATE_UPPER = paging.P | paging.RW | paging.A  # no US: supervisor only
_PRIVATE_DATA = paging.P | paging.A | paging.NX
_PRIVATE_CODE = paging.P | paging.A


def reserved_gdt_entries() -> dict[int, int]:
    """Xen's reserved descriptors on x86-64 (accessed bits preset): ring-0 64-bit code
    and data for the hypervisor, and the ring-3 compat code, data and 64-bit code
    segments every guest runs on."""
    code, data = CODE_RX | ACCESSED, DATA_RW | ACCESSED
    return {
        HYPERVISOR_CS >> 3: SegmentDescriptor.flat(code, long=True, db=False).to_int(),
        HYPERVISOR_DS >> 3: SegmentDescriptor.flat(data).to_int(),
        xen64.FLAT_RING3_CS32 >> 3: SegmentDescriptor.flat(code, 3).to_int(),
        xen64.FLAT_RING3_SS64 >> 3: SegmentDescriptor.flat(data, 3).to_int(),
        xen64.FLAT_RING3_CS64 >> 3: SegmentDescriptor.flat(code, 3, long=True, db=False).to_int(),
    }


def xen_l4_entries() -> dict[int, int]:
    """What Xen's slots of every validated L4 hold (slot -> entry; the others 0)."""
    return {xen64.RO_MPT_L4_SLOT: M2P_L3 | _UPPER_READ_ONLY,
            xen64.PERDOMAIN_L4_SLOT: PRIVATE_L3 | _PRIVATE_UPPER}


def hypervisor_tables(nr_pages: int) -> dict[int, bytes]:
    """The tables that map slots 256 and 260, by physical address: the M2P's first
    8 * NR_PAGES bytes, and the private area's pages."""
    m2p_pages = -(-8 * nr_pages // PAGE_SIZE)
    m2p_l1s = [_table([M2P_FRAMES + (i * ENTRIES + j) * PAGE_SIZE | _M2P_PAGE
                       for j in range(ENTRIES) if i * ENTRIES + j < m2p_pages])
               for i in range(M2P_L1_TABLES)]
    private = {page: frame | _PRIVATE_DATA for page, frame in layout.gdt_windows().items()}
    private[(TRAMPOLINE - PRIVATE) // PAGE_SIZE] = layout.TRAMPOLINE | _PRIVATE_CODE
    private[(TRAMPOLINE_FRAME - PRIVATE) // PAGE_SIZE] = layout.TRAMPOLINE_FRAMES | _PRIVATE_DATA
    tables = {
        M2P_L3: _table([M2P_L2 | _UPPER_READ_ONLY]),
        M2P_L2: _table([M2P_L1 + i * PAGE_SIZE | _UPPER_READ_ONLY for i in range(M2P_L1_TABLES)]),
        PRIVATE_L3: _table([PRIVATE_L2 | _PRIVATE_UPPER]),
        PRIVATE_L2: _table([PRIVATE_L1 | _PRIVATE_UPPER]),
        PRIVATE_L1: _table([private.get(i, 0) for i in range(ENTRIES)]),
    }
    tables.update({M2P_L1 + i * PAGE_SIZE: table for i, table in enumerate(m2p_l1s)})
    return tables


def frame_list(nr_pages: int) -> bytes:
    """NR_PAGES frame numbers of 8 bytes, 0 up: the machine-to-phys table and the p2m
    list alike, since machine frame = pseudo-physical frame (docs/ABI.md)."""
    return struct.pack(f"<{nr_pages}Q", *range(nr_pages))


def _table(entries: list[int]) -> bytes:
    return struct.pack(f"<{ENTRIES}Q", *(entries + [0] * (ENTRIES - len(entries))))
