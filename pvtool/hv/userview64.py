"""The page tables user mode runs on under 64-bit trap-and-emulate.

A 64-bit kernel runs at CPL 3 beside its user programs, so every page it maps must be
user-accessible (the validator sets U everywhere, as Xen's adjust_guest_l1e does) and
the U bit no longer keeps its programs out of its memory. Xen's answer is a second L4
for user mode that the PV kernel builds (XEN-ABI64.md 1.1); an unmodified kernel
builds none, so the hypervisor derives one: a copy of the kernel's validated tree in
which every page the kernel mapped for itself (the validator marked it
_PAGE_GUEST_KERNEL) is supervisor-only again. Tables holding no such page are shared
with the kernel's tree rather than copied; Xen's slots are kept as they are.

The view is rebuilt from the kernel's tables whenever they may have changed
(hv/trapmode64.py's Modes decides when): every change to them is made in kernel mode.
Its frames are the hypervisor's (a fixed pool), never mapped by the guest.
"""

import struct

from pvtool.abi.xen64 import PAGE_GUEST_KERNEL, XEN_L4_SLOTS
from pvtool.hv.errors import DomainCrash
from pvtool.machine.memory import GuestMemory
from pvtool.x86 import paging
from pvtool.x86.paging import PAGE_SHIFT, PAGE_SIZE

ENTRIES = 512
TABLE = struct.Struct(f"<{ENTRIES}Q")
ADDRESS = 0x000F_FFFF_FFFF_F000  # bits 51-12 of an entry


class UserView:
    """Builds user mode's L4 from the kernel's, in POOL_PAGES frames from POOL."""

    def __init__(self, memory: GuestMemory, pool: int, pool_pages: int):
        self.memory = memory
        self.pool = pool
        self.pool_pages = pool_pages
        self.used = 0

    def build(self, l4_mfn: int) -> int:
        """The physical address of the user L4 for the kernel L4 at L4_MFN."""
        self.used = 0
        entries = list(self._read(l4_mfn << PAGE_SHIFT))
        for slot, entry in enumerate(entries):
            if entry & paging.P and slot not in XEN_L4_SLOTS:
                entries[slot] = self._relink(entry, 3)
        return self._store(entries)

    def _relink(self, entry: int, level: int) -> int:
        """ENTRY pointing at its view: the same table, or a copy."""
        table = entry & ADDRESS
        view = self._view(table, level)
        return entry if view == table else entry & ~ADDRESS | view

    def _view(self, table: int, level: int) -> int:
        entries = self._read(table)
        if level == 1:
            if not any(e & paging.P and e & PAGE_GUEST_KERNEL for e in entries):
                return table
            return self._store([e & ~paging.US if e & PAGE_GUEST_KERNEL else e
                                for e in entries])
        viewed = [self._relink(e, level - 1) if e & paging.P and not e & paging.PS else e
                  for e in entries]
        return table if viewed == list(entries) else self._store(viewed)

    def _read(self, address: int) -> tuple[int, ...]:
        return TABLE.unpack(self.memory.read_phys(address, PAGE_SIZE))

    def _store(self, entries: list[int]) -> int:
        if self.used == self.pool_pages:
            raise DomainCrash(f"user mode's page tables need more than {self.pool_pages} "
                              "tables of the hypervisor's")
        address = self.pool + self.used * PAGE_SIZE
        self.used += 1
        self.memory.write_phys(address, TABLE.pack(*entries))
        return address
