"""Xen's memory isolation for 2-level page tables: validated bases, typed frames.

A hierarchy becomes the base (NEW_BASEPTR) only after every present entry is checked:
each L1 a frame the domain owns, each mapping a frame the domain owns, and nothing of
the hierarchy itself writable (a page table in use is never writable by the guest).
The hypervisor's slots of every L2 are the hypervisor's: whatever the guest wrote there
is replaced.

An unmodified kernel maps its own page tables writable (it ran in ring 0), so when a
new base is validated such a mapping is installed read-only instead of refused
(docs/ABI.md); an explicit update that asks for one (update_va_mapping, mmu_update) is
refused with -EINVAL, as Xen does.
"""

import struct

from pvtool.abi.xen import Errno
from pvtool.hv import layout
from pvtool.hv.domain import Domain, HypercallError
from pvtool.machine.cpu import CR3
from pvtool.x86 import paging

ENTRIES = 1024
PAGE = 4096
GUEST_SLOTS = layout.FIRST_SLOT  # L2 slots below the hypervisor's


class PageTables:
    """The domain's current page-table base and the frames typed as page tables."""

    def __init__(self, domain: Domain, base_mfn: int):
        self.domain = domain
        self.base_mfn = base_mfn
        self.typed: dict[int, int] = {}  # mfn -> level (1 or 2) in the current base
        self.downgraded = 0  # writable mappings of page tables installed read-only

    # -- reading and writing tables ----------------------------------------------------
    def _entries(self, mfn: int) -> list[int]:
        return list(struct.unpack(f"<{ENTRIES}I", self.domain.memory.read_phys(mfn * PAGE, PAGE)))

    def _write_entry(self, mfn: int, index: int, value: int) -> None:
        self.domain.memory.write_u32(mfn * PAGE + 4 * index, value)

    def flush_tlb(self) -> None:
        """Reloading CR3 flushes Unicorn's TLB, even with the same value."""
        cpu = self.domain.machine.cpu
        cpu.write(CR3, cpu.read(CR3))

    # -- a new base ----------------------------------------------------------------------
    def new_baseptr(self, l2_mfn: int) -> None:
        """Validate the hierarchy under L2_MFN and make it the address space."""
        if not self.domain.owns_frame(l2_mfn) or l2_mfn == layout.SHARED_INFO >> 12:
            raise HypercallError(Errno.EINVAL, f"base frame {l2_mfn:#x} is not the domain's")
        l2 = self._entries(l2_mfn)
        l1_frames = self._l1_frames(l2)
        typed = {l2_mfn: 2} | {mfn: 1 for mfn in l1_frames}
        for mfn in l1_frames:
            self._validate_l1(mfn, typed)
        self._install_hypervisor_slots(l2_mfn)
        self.typed = typed
        self.base_mfn = l2_mfn
        self.domain.machine.cpu.write(CR3, l2_mfn * PAGE)
        self.domain.log(f"new base {l2_mfn:#x}: {len(l1_frames)} page tables validated")

    def _l1_frames(self, l2: list[int]) -> list[int]:
        frames = []
        for slot in range(GUEST_SLOTS):
            pde = l2[slot]
            if not pde & paging.P:
                continue
            if pde & paging.PS:
                raise HypercallError(Errno.EINVAL,
                                     f"L2 slot {slot}: superpages are not supported")
            mfn = pde >> 12
            if not self.domain.owns_frame(mfn):
                raise HypercallError(Errno.EINVAL,
                                     f"L2 slot {slot} points at frame {mfn:#x}, not the domain's")
            if mfn not in frames:
                frames.append(mfn)
        return frames

    def _validate_l1(self, mfn: int, typed: dict[int, int]) -> None:
        for index, pte in enumerate(self._entries(mfn)):
            if not pte & paging.P:
                continue
            frame = pte >> 12
            if not self.domain.owns_frame(frame):
                raise HypercallError(
                    Errno.EINVAL, f"page table {mfn:#x}[{index}] maps frame {frame:#x}, "
                    "which the domain does not own")
            if pte & paging.RW and frame in typed:
                self._write_entry(mfn, index, pte & ~paging.RW)
                self.downgraded += 1

    def _install_hypervisor_slots(self, l2_mfn: int) -> None:
        slots = layout.hypervisor_slots().entries
        for slot in range(GUEST_SLOTS, ENTRIES):
            self._write_entry(l2_mfn, slot, slots.get(slot, 0))

    # -- explicit updates ----------------------------------------------------------------
    def check_new_pte(self, pte: int) -> None:
        """Refuse a mapping the domain may not make (Xen's get_page_from_l1e)."""
        if not pte & paging.P:
            return
        frame = pte >> 12
        if not self.domain.owns_frame(frame):
            raise HypercallError(Errno.EINVAL, f"frame {frame:#x} is not the domain's")
        if pte & paging.RW and frame in self.typed:
            raise HypercallError(Errno.EINVAL,
                                 f"frame {frame:#x} is a page table: no writable mapping")

    def l1_slot_for(self, vaddr: int) -> tuple[int, int]:
        """(L1 frame, index) of the entry mapping VADDR in the current base."""
        if vaddr >= layout.BASE:
            raise HypercallError(Errno.EINVAL, f"{vaddr:#x} is in the hypervisor's range")
        pde = self._entries(self.base_mfn)[vaddr >> 22]
        if not pde & paging.P or pde & paging.PS:
            raise HypercallError(Errno.EINVAL, f"no page table maps {vaddr:#x}")
        return pde >> 12, (vaddr >> 12) & (ENTRIES - 1)

    def update_va_mapping(self, vaddr: int, pte: int) -> None:
        mfn, index = self.l1_slot_for(vaddr)
        self.check_new_pte(pte)
        self._write_entry(mfn, index, pte)
