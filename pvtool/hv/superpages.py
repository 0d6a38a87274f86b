"""4 MiB pages (2-level paging with CR4.PSE) for kernels that were not written for Xen.

Xen's PV ABI gives a guest no superpages unless the domain opts in (Xen's old
"allowsuperpage", since removed); a Xen guest gets that refusal here too. An
unmodified kernel (trap mode) or a patched one (its glue) opts in: small kernels map
their first megabytes with 4 MiB pages the moment they turn paging on, xv6's
entrypgdir among them, and such a mapping is writable and covers the page directory.

The decision: each 4 MiB entry is split into an L1 table the hypervisor owns, and the
guest's L2 entry is replaced by a link to it. Validating Xen's old way (take every
frame of the superpage, refuse a writable one over a page table) would refuse exactly
those kernels, since one writable page table inside the 4 MiB condemns the whole
entry; with 4 KiB entries the validator applies its usual rules frame by frame: every
frame must be the domain's, and a page table inside a writable superpage is mapped
read-only (the 2-level downgrade, docs/ABI.md) or refused (an explicit request).
So Xen's invariants hold as for any L1: no writable mapping of a page table in use,
only the domain's frames, the hypervisor's range untouched (an L2 slot there is never
the guest's).

A split table is an ordinary validated L1 in the frame table (typed, counted, linked
from the L2s that use it), owned by DOMID_XEN so the guest can neither map it nor
name it in an entry of its own (only a 4 MiB entry leads to it), nor change it with
mmu_update or update_va_mapping. Identical 4 MiB entries share one split table.
The guest reads back its own L2 entry when the hypervisor reads it for the guest
(PageTables.read_entry, ptwr's merge), not when it reads the frame itself: there it
finds the link (docs/ABI.md lists the departure). The CPU sets the accessed and dirty
bits in the split table's entries, not in the guest's L2 entry.
"""

import struct
from collections.abc import Callable

from pvtool.abi.xen import Errno
from pvtool.hv import layout
from pvtool.hv.errors import HypercallError
from pvtool.x86 import paging
from pvtool.x86.paging import PAGE_SHIFT, PAGE_SIZE

ENTRIES = 1024  # 4 KiB pages in a 2-level superpage
LARGE_FRAME = 0xFFC0_0000  # a 4 MiB entry's frame below 4 GiB
# Bits 13-21 of a 4 MiB entry: PSE-36's physical address bits 32-39 and bit 21,
# reserved (SDM Vol. 3A, table 4-4). No domain owns a frame above 4 GiB.
ABOVE_4GIB = 0x003F_E000
# The flags a 4 MiB entry hands down to each 4 KiB entry (PAT moves from bit 12 to 7).
KEPT_FLAGS = (paging.P | paging.RW | paging.US | paging.PWT | paging.PCD | paging.A
              | paging.D | paging.G)
# The link to a split table: the rights are the split table's entries'.
LINK_FLAGS = paging.P | paging.RW | paging.US | paging.A
POOL_CHUNK = 64  # frames mapped at a time


class SplitTables:
    """The L1 tables standing for a domain's 4 MiB entries, in hypervisor frames of
    the pool (layout.SPLIT_POOL) mapped as they are needed."""

    def __init__(self, write_phys: Callable[[int, bytes], None],
                 map_memory: Callable[[int, int], None]):
        self._write_phys = write_phys
        self._map_memory = map_memory
        self._by_entry: dict[int, int] = {}  # 4 MiB entry (frame and flags) -> table
        self._keys: dict[int, int] = {}  # table -> its 4 MiB entry
        self._next = layout.SPLIT_POOL >> PAGE_SHIFT
        self._mapped = self._next

    @staticmethod
    def key(entry: int) -> int:
        return entry & (LARGE_FRAME | KEPT_FLAGS | paging.PAT_LARGE)

    def table_for(self, entry: int) -> int:
        """The split table of 4 MiB ENTRY (a new one is filled)."""
        key = self.key(entry)
        mfn = self._by_entry.get(key)
        if mfn is None:
            mfn = self._allocate()
            self._by_entry[key] = mfn
            self._keys[mfn] = key
            self.fill(mfn)
        return mfn

    def fill(self, mfn: int) -> None:
        """Write split table MFN's entries as its 4 MiB entry gives them: done again
        whenever it is validated anew, since a downgrade may have left it changed."""
        key = self._keys[mfn]
        flags = key & KEPT_FLAGS | (paging.PAT if key & paging.PAT_LARGE else 0)
        base = key & LARGE_FRAME
        self._write_phys(mfn << PAGE_SHIFT, struct.pack(
            f"<{ENTRIES}I", *(base + i * PAGE_SIZE | flags for i in range(ENTRIES))))

    @staticmethod
    def link(mfn: int) -> int:
        """The L2 entry installed in place of a 4 MiB one."""
        return mfn << PAGE_SHIFT | LINK_FLAGS

    def _allocate(self) -> int:
        if self._next == layout.SPLIT_POOL_END >> PAGE_SHIFT:
            raise HypercallError(Errno.EINVAL, "no frame left to split a 4 MiB page into")
        if self._next == self._mapped:
            self._map_memory(self._mapped << PAGE_SHIFT, POOL_CHUNK * PAGE_SIZE)
            self._mapped += POOL_CHUNK
        self._next += 1
        return self._next - 1
