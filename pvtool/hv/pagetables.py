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
from pvtool.hv.domain import Domain
from pvtool.hv.errors import HypercallError
from pvtool.machine.cpu import CR3
from pvtool.x86 import paging
from pvtool.x86.paging import PAGE_SIZE

ENTRIES = 1024
GUEST_SLOTS = layout.FIRST_SLOT  # L2 slots below the hypervisor's


class PageTables:
    """The domain's current page-table base and the frames typed as page tables."""

    pae = False

    def __init__(self, domain: Domain, base_mfn: int, *, glue: bool = False):
        self.domain = domain
        self.glue = glue  # map the patched kernel's glue window in every address space
        self.base_mfn = base_mfn
        self.typed: dict[int, int] = {}  # mfn -> level (1 or 2) in the base or pinned
        self.pinned: dict[int, int] = {}  # mfn -> level it was pinned as
        self.downgraded: set[int] = set()  # PTEs made read-only because they map a table

    # -- reading and writing tables ----------------------------------------------------
    def _entries(self, mfn: int) -> list[int]:
        table = self.domain.memory.read_phys(mfn * PAGE_SIZE, PAGE_SIZE)
        return list(struct.unpack(f"<{ENTRIES}I", table))

    def _write_entry(self, mfn: int, index: int, value: int) -> None:
        self.domain.memory.write_u32(mfn * PAGE_SIZE + 4 * index, value)

    def flush_tlb(self) -> None:
        """Reloading CR3 flushes Unicorn's TLB, even with the same value."""
        cpu = self.domain.machine.cpu
        cpu.write(CR3, cpu.read(CR3))

    # -- a new base ----------------------------------------------------------------------
    def new_baseptr(self, l2_mfn: int) -> None:
        """Validate the hierarchy under L2_MFN and make it the address space."""
        if not self._is_ram(l2_mfn):
            raise HypercallError(Errno.EINVAL, f"base frame {l2_mfn:#x} is not the domain's")
        l2 = self._entries(l2_mfn)
        l1_frames = self._l1_frames(l2, l2_mfn)
        typed = self._pinned_types() | {l2_mfn: 2} | {mfn: 1 for mfn in l1_frames}
        self._check_types(typed)
        for mfn in l1_frames:
            self._validate_l1(mfn, typed)
        self._install_hypervisor_slots(l2_mfn)
        self.typed = typed
        self.base_mfn = l2_mfn
        self.domain.machine.cpu.write(CR3, l2_mfn * PAGE_SIZE)
        self.domain.log(f"new base {l2_mfn:#x}: {len(l1_frames)} page tables validated")

    def _pinned_types(self) -> dict[int, int]:
        """Pinned tables keep their type (and a pinned L2 its L1s') whatever the base."""
        types: dict[int, int] = {}
        for mfn, level in self.pinned.items():
            if level == 2:
                types |= {l1: 1 for l1 in self._l1_frames(self._entries(mfn), mfn)}
            types[mfn] = level
        return types

    def _check_types(self, typed: dict[int, int]) -> None:
        """A frame has one type: a pinned table used at another level is refused."""
        for mfn, level in self.pinned.items():
            if typed.get(mfn, level) != level:
                raise HypercallError(Errno.EINVAL, f"frame {mfn:#x} is pinned as a level-"
                                     f"{level} table and used as level {typed[mfn]}")

    def _is_ram(self, mfn: int) -> bool:
        """Only the domain's RAM can hold its page tables: its shared_info page is
        writable through the hypervisor's own mapping, so it may never be one."""
        return mfn < self.domain.nr_pages

    def _l1_frames(self, l2: list[int], l2_mfn: int) -> list[int]:
        """The L1 frames the guest slots of L2 (at L2_MFN) point at. A slot pointing
        back at L2_MFN is a linear mapping, allowed read-only as on Xen
        (get_linear_pagetable): writable, it would hand the guest its own tables."""
        frames = []
        for slot in range(GUEST_SLOTS):
            pde = l2[slot]
            if not pde & paging.P:
                continue
            if pde & paging.PS:
                raise HypercallError(Errno.EINVAL,
                                     f"L2 slot {slot}: superpages are not supported")
            mfn = pde >> 12
            if mfn == l2_mfn:
                if pde & paging.RW:
                    raise HypercallError(Errno.EINVAL, f"L2 slot {slot} maps the page "
                                         "directory itself writable")
                continue
            if not self._is_ram(mfn):
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
                self.downgraded.add(mfn * PAGE_SIZE + 4 * index)

    def _install_hypervisor_slots(self, l2_mfn: int) -> None:
        slots = layout.hypervisor_slots(self.glue).entries
        for slot in range(GUEST_SLOTS, ENTRIES):
            self._write_entry(l2_mfn, slot, slots.get(slot, 0))

    # -- pinning -------------------------------------------------------------------------
    def pin(self, mfn: int, level: int) -> None:
        """MMUEXT_PIN_L1/L2_TABLE: validate MFN as a table of LEVEL and keep its type
        while pinned. A table still mapped writable cannot become one (-EINVAL)."""
        if level not in (1, 2):
            raise HypercallError(Errno.EINVAL, f"a 2-level domain has no level-{level} tables")
        if not self._is_ram(mfn) or mfn in self.pinned:
            raise HypercallError(Errno.EINVAL, f"frame {mfn:#x} cannot be pinned")
        if self.typed.get(mfn, level) != level:
            raise HypercallError(Errno.EINVAL, f"frame {mfn:#x} is a level-"
                                 f"{self.typed[mfn]} table")
        new = {mfn: level} if level == 1 else \
            {mfn: 2} | {l1: 1 for l1 in self._l1_frames(self._entries(mfn), mfn)}
        for frame, frame_level in new.items():
            if self.typed.get(frame, frame_level) != frame_level:
                raise HypercallError(Errno.EINVAL, f"frame {frame:#x} is a level-"
                                     f"{self.typed[frame]} table")
            if frame not in self.typed and self._mapped_writable(frame):
                raise HypercallError(Errno.EINVAL, f"frame {frame:#x} is mapped writable")
        typed = self.typed | new
        for frame, frame_level in new.items():
            if frame_level == 1:
                self._check_l1_strict(frame, typed)
        self.pinned[mfn] = level
        self.typed = typed

    def unpin(self, mfn: int) -> None:
        """MMUEXT_UNPIN_TABLE: the frame keeps its type only while the base uses it."""
        if self.pinned.pop(mfn, None) is None:
            raise HypercallError(Errno.EINVAL, f"frame {mfn:#x} is not pinned")
        l2 = self._entries(self.base_mfn)
        self.typed = self._pinned_types() | {self.base_mfn: 2} | \
            {l1: 1 for l1 in self._l1_frames(l2, self.base_mfn)}

    def _mapped_writable(self, frame: int) -> bool:
        for mfn, level in self.typed.items():
            if level == 1 and any(pte & paging.P and pte & paging.RW and pte >> 12 == frame
                                  for pte in self._entries(mfn)):
                return True
        return False

    def _check_l1_strict(self, mfn: int, typed: dict[int, int]) -> None:
        """A table pinned by a kernel written for Xen is checked as Xen does: a
        writable mapping of a page table in it is refused, not downgraded."""
        for index, pte in enumerate(self._entries(mfn)):
            if not pte & paging.P:
                continue
            frame = pte >> 12
            if not self.domain.owns_frame(frame) or pte & paging.RW and frame in typed:
                raise HypercallError(Errno.EINVAL, f"page table {mfn:#x}[{index}] maps "
                                     f"frame {frame:#x}, which it may not")

    # -- explicit updates ----------------------------------------------------------------
    def mmu_update(self, address: int, val: int) -> None:
        """One MMU_NORMAL_PT_UPDATE: an entry of an L1 in use (or pinned)."""
        mfn = address >> 12
        if self.typed.get(mfn) != 1:
            raise HypercallError(Errno.EINVAL, f"frame {mfn:#x} is not an L1 page table in use")
        if val >> 32:
            raise HypercallError(Errno.EINVAL, f"a 2-level PTE has no high half ({val:#x})")
        self.check_new_pte(val)
        self.domain.memory.write_u32(address, val)

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

    def restore_write_access(self, pte_addr: int) -> None:
        """A frame that is no longer a page table is writable again through the
        mapping pvtool write-protected while it was one."""
        self.downgraded.discard(pte_addr)
        self.domain.memory.write_u32(pte_addr, self.domain.memory.read_u32(pte_addr) | paging.RW)
        self.flush_tlb()

    def write_entry(self, entry_addr: int, value: int) -> None:
        """A kernel's own store into a page table in use (writable page tables): the
        entry is validated as at NEW_BASEPTR, then written."""
        mfn, index = entry_addr >> 12, (entry_addr & (PAGE_SIZE - 1)) // 4
        if self.typed.get(mfn) == 2:
            self._write_l2_entry(mfn, index, value)
        else:
            self._write_l1_entry(mfn, index, value)
        self.flush_tlb()

    def _write_l1_entry(self, mfn: int, index: int, pte: int) -> None:
        if pte & paging.P:
            frame = pte >> 12
            if not self.domain.owns_frame(frame):
                raise HypercallError(Errno.EINVAL, f"frame {frame:#x} is not the domain's")
            if pte & paging.RW and frame in self.typed:
                pte &= ~paging.RW
                self.downgraded.add(mfn * PAGE_SIZE + 4 * index)
        self._write_entry(mfn, index, pte)

    def _write_l2_entry(self, mfn: int, slot: int, pde: int) -> None:
        if slot >= GUEST_SLOTS:
            raise HypercallError(Errno.EINVAL, f"L2 slot {slot} belongs to the hypervisor")
        if pde & paging.P:
            entries = [0] * ENTRIES
            entries[slot] = pde
            for l1 in self._l1_frames(entries, mfn):
                if self.typed.get(l1) == 2:
                    raise HypercallError(Errno.EINVAL, f"frame {l1:#x} is a page directory: "
                                         "it cannot also be a page table")
                # Checked even when already typed (pinned, or linked elsewhere): frames
                # may have become page tables since, and must not be writable through it.
                typed = self.typed | {l1: 1}
                self._validate_l1(l1, typed)
                self.typed = typed
                self._write_protect(l1)
        self._write_entry(mfn, slot, pde)

    def _write_protect(self, frame: int) -> None:
        """Make every mapping of FRAME in the current hierarchy read-only."""
        for mfn, level in self.typed.items():
            if level != 1:
                continue
            for index, pte in enumerate(self._entries(mfn)):
                if pte & paging.P and pte & paging.RW and pte >> 12 == frame:
                    self._write_entry(mfn, index, pte & ~paging.RW)
                    self.downgraded.add(mfn * PAGE_SIZE + 4 * index)

    def update_va_mapping(self, vaddr: int, pte: int) -> None:
        mfn, index = self.l1_slot_for(vaddr)
        self.check_new_pte(pte)
        self._write_entry(mfn, index, pte)
