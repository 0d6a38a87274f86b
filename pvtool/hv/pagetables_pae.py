"""Xen's memory isolation for PAE (3-level) page tables, today's 32-bit PV.

A PAE base is an L3 (Xen uses a whole page; CR3 points at its first 32 bytes) whose
four entries may carry no flag but present (Xen's L3_DISALLOW_MASK). The L2 under
slot 3 maps 0xC0000000 up and holds the hypervisor's slots 428-511 (0xF5800000 up),
which Xen writes and the guest never may; that L2 may appear in no other slot. Every
present L2 entry names an L1 the domain owns (no superpages), every L1 entry a frame
the domain owns, and no page table of the hierarchy, nor a pinned one, is mapped
writable: such a request is refused with -EINVAL, as on Xen (PAE kernels are written
for Xen and map their tables read-only; there is no downgrade as for 2-level).

Types follow Xen's rule: a frame is a page table of one level while the current base
references it or while it is pinned (MMUEXT_PIN_Ln_TABLE); an update to a level-2 or
level-3 entry re-validates the tree, and is undone if the result is refused.
"""

import struct

from pvtool.abi.xen import PAE_L3_ALLOWED_FLAGS, PAE_XEN_L3_SLOT, Errno
from pvtool.hv import layout
from pvtool.hv.domain import Domain
from pvtool.hv.errors import HypercallError
from pvtool.machine.cpu import CR3
from pvtool.x86 import paging
from pvtool.x86.paging import PAGE_SIZE

ENTRIES = 512
L3_ENTRIES = 4
FRAME_MASK = 0x000F_FFFF_FFFF_F000
RESERVED_HIGH = 0xFFF0_0000_0000_0000  # bits 52-62 reserved, and NX (63): EFER.NXE is off
XEN_SLOTS = range(layout.PAE_FIRST_SLOT, ENTRIES)


def _frame(entry: int) -> int:
    return (entry & FRAME_MASK) >> 12


class PaePageTables:
    """The domain's current L3 base and the frames typed as page tables."""

    pae = True

    def __init__(self, domain: Domain, base_mfn: int):
        self.domain = domain
        self.glue = False  # no glue window on PAE (patched PAE kernels are out of scope)
        self.base_mfn = base_mfn
        self.typed: dict[int, int] = {}  # mfn -> level, in the base or pinned
        self.pinned: dict[int, int] = {}  # mfn -> level it was pinned as
        self.downgraded: set[int] = set()  # always empty: PAE refuses, never downgrades

    # -- reading and writing tables ----------------------------------------------------
    def _entries(self, mfn: int, count: int = ENTRIES) -> tuple[int, ...]:
        return struct.unpack(f"<{count}Q", self.domain.memory.read_phys(mfn * PAGE_SIZE, 8 * count))

    def _read(self, address: int) -> int:
        return struct.unpack("<Q", self.domain.memory.read_phys(address, 8))[0]

    def _write(self, address: int, value: int) -> None:
        self.domain.memory.write_phys(address, struct.pack("<Q", value))

    def flush_tlb(self) -> None:
        """Reloading CR3 flushes Unicorn's TLB (and its PDPTEs), even with the same value."""
        cpu = self.domain.machine.cpu
        cpu.write(CR3, cpu.read(CR3))

    def _is_ram(self, mfn: int) -> bool:
        return mfn < self.domain.nr_pages

    # -- validation of a tree --------------------------------------------------------
    def _claim(self, types: dict[int, int], mfn: int, level: int, where: str) -> bool:
        """Give MFN type LEVEL in TYPES; False if it had it already (validated)."""
        if not self._is_ram(mfn):
            raise HypercallError(Errno.EINVAL, f"{where} points at frame {mfn:#x}, "
                                 "not the domain's")
        have = types.get(mfn, self.pinned.get(mfn))
        if have is not None and have != level:
            raise HypercallError(Errno.EINVAL, f"{where}: frame {mfn:#x} is a level-{have} "
                                 f"page table, not level {level}")
        fresh = mfn not in types
        types[mfn] = level
        return fresh

    def _collect(self, mfn: int, level: int, types: dict[int, int]) -> None:
        """Type every table of the tree under MFN (a LEVEL table) into TYPES."""
        if not self._claim(types, mfn, level, f"level-{level} table"):
            return
        if level == 3:
            self._collect_l3(mfn, types)
        elif level == 2:
            self._collect_l2(mfn, types, xen_l2=False)

    def _collect_l3(self, l3_mfn: int, types: dict[int, int]) -> None:
        seen = []
        for slot, entry in enumerate(self._entries(l3_mfn, L3_ENTRIES)):
            where = f"L3 {l3_mfn:#x}[{slot}]"
            if not entry & paging.P:
                if slot == PAE_XEN_L3_SLOT:
                    raise HypercallError(Errno.EINVAL, f"{where} is empty: the L2 under "
                                         "slot 3 holds the hypervisor's mappings")
                continue
            if entry & 0xFFF & ~PAE_L3_ALLOWED_FLAGS or entry & RESERVED_HIGH:
                raise HypercallError(Errno.EINVAL, f"{where} = {entry:#x}: an L3 entry may "
                                     "carry no flag but present")
            l2 = _frame(entry)
            if slot == PAE_XEN_L3_SLOT and (l2 in seen or l2 in types):
                raise HypercallError(Errno.EINVAL, f"{where}: the hypervisor's L2 "
                                     f"{l2:#x} is used elsewhere")
            seen.append(l2)
            if self._claim(types, l2, 2, where):
                self._collect_l2(l2, types, xen_l2=slot == PAE_XEN_L3_SLOT)

    def _collect_l2(self, l2_mfn: int, types: dict[int, int], *, xen_l2: bool) -> None:
        for slot, entry in enumerate(self._entries(l2_mfn)):
            if xen_l2 and slot in XEN_SLOTS or not entry & paging.P:
                continue
            where = f"L2 {l2_mfn:#x}[{slot}]"
            if entry & paging.PS:
                raise HypercallError(Errno.EINVAL, f"{where}: superpages are not supported")
            if entry & RESERVED_HIGH:
                raise HypercallError(Errno.EINVAL, f"{where} = {entry:#x} sets reserved bits")
            self._claim(types, _frame(entry), 1, where)

    def _check_l1s(self, types: dict[int, int]) -> None:
        """Every mapping of every L1 in TYPES: an owned frame, never a table writable."""
        for mfn, level in types.items():
            if level != 1:
                continue
            for index, pte in enumerate(self._entries(mfn)):
                if pte & paging.P:
                    self._check_pte(pte, types, f"page table {mfn:#x}[{index}]: ")

    def _check_pte(self, pte: int, types: dict[int, int], where: str = "") -> None:
        if not pte & paging.P:
            return
        frame = _frame(pte)
        if pte & RESERVED_HIGH:
            raise HypercallError(Errno.EINVAL, f"{where}PTE {pte:#x} sets reserved bits")
        if not self.domain.owns_frame(frame):
            raise HypercallError(Errno.EINVAL,
                                 f"{where}frame {frame:#x} is not the domain's")
        if pte & paging.RW and frame in types:
            raise HypercallError(Errno.EINVAL,
                                 f"{where}frame {frame:#x} is a page table: no writable mapping")

    def _validate(self, base_mfn: int) -> dict[int, int]:
        """The types of the tree under BASE_MFN and of the pinned tables, all checked."""
        types: dict[int, int] = {}
        for mfn, level in self.pinned.items():
            self._collect(mfn, level, types)
        self._collect(base_mfn, 3, types)
        self._check_l1s(types)
        return types

    def _xen_l2(self, l3_mfn: int) -> int:
        return _frame(self._entries(l3_mfn, L3_ENTRIES)[PAE_XEN_L3_SLOT])

    def _install_hypervisor_slots(self, l3_mfn: int) -> None:
        l2 = self._xen_l2(l3_mfn)
        slots = layout.pae_hypervisor_slots().entries
        for slot in XEN_SLOTS:
            self._write(l2 * PAGE_SIZE + 8 * slot, slots.get(slot, 0))

    # -- a new base ----------------------------------------------------------------------
    def new_baseptr(self, l3_mfn: int) -> None:
        """Validate the hierarchy under the L3 at L3_MFN and make it the address space."""
        if not self._is_ram(l3_mfn):
            raise HypercallError(Errno.EINVAL, f"base frame {l3_mfn:#x} is not the domain's")
        self.typed = self._validate(l3_mfn)
        self._install_hypervisor_slots(l3_mfn)
        self.base_mfn = l3_mfn
        self.domain.machine.cpu.write(CR3, l3_mfn * PAGE_SIZE)
        self.domain.log(f"new PAE base {l3_mfn:#x}: {len(self.typed)} page tables validated")

    # -- pinning -------------------------------------------------------------------------
    def pin(self, mfn: int, level: int) -> None:
        if level not in (1, 2, 3):
            raise HypercallError(Errno.EINVAL, f"a PAE domain has no level-{level} tables")
        if mfn in self.pinned:
            raise HypercallError(Errno.EINVAL, f"frame {mfn:#x} is already pinned")
        self.pinned[mfn] = level
        try:
            self.typed = self._validate(self.base_mfn)
        except HypercallError:
            del self.pinned[mfn]
            raise
        self.flush_tlb()

    def unpin(self, mfn: int) -> None:
        if self.pinned.pop(mfn, None) is None:
            raise HypercallError(Errno.EINVAL, f"frame {mfn:#x} is not pinned")
        self.typed = self._validate(self.base_mfn)

    # -- explicit updates ----------------------------------------------------------------
    def check_new_pte(self, pte: int) -> None:
        self._check_pte(pte, self.typed)

    def l1_slot_for(self, vaddr: int) -> tuple[int, int]:
        """(L1 frame, index) of the entry mapping VADDR in the current base."""
        if vaddr >= layout.PAE_BASE:
            raise HypercallError(Errno.EINVAL, f"{vaddr:#x} is in the hypervisor's range")
        l3e = self._entries(self.base_mfn, L3_ENTRIES)[vaddr >> 30]
        l2e = self._read(_frame(l3e) * PAGE_SIZE + 8 * ((vaddr >> 21) & (ENTRIES - 1))) \
            if l3e & paging.P else 0
        if not l2e & paging.P or l2e & paging.PS:
            raise HypercallError(Errno.EINVAL, f"no page table maps {vaddr:#x}")
        return _frame(l2e), (vaddr >> 12) & (ENTRIES - 1)

    def update_va_mapping(self, vaddr: int, pte: int) -> None:
        mfn, index = self.l1_slot_for(vaddr)
        self.check_new_pte(pte)
        self._write(mfn * PAGE_SIZE + 8 * index, pte)

    def mmu_update(self, address: int, value: int) -> None:
        """One MMU_NORMAL_PT_UPDATE: the 64-bit entry at machine ADDRESS of a table in
        use. An L1 entry is checked alone; an L2 or L3 entry re-validates the tree."""
        mfn, offset = address >> 12, address & (PAGE_SIZE - 1)
        level = self.typed.get(mfn)
        if offset & 7 or level is None:
            raise HypercallError(Errno.EINVAL, f"{address:#x} is not an entry of a page "
                                 "table in use")
        if level == 1:
            self.check_new_pte(value)
            self._write(address, value)
            return
        if level == 3 and offset >= 8 * L3_ENTRIES:
            raise HypercallError(Errno.EINVAL, f"L3 entry {offset // 8}: a PAE L3 has four")
        if level == 2 and offset // 8 in XEN_SLOTS and mfn == self._xen_l2(self.base_mfn):
            raise HypercallError(Errno.EINVAL,
                                 f"L2 slot {offset // 8} belongs to the hypervisor")
        old = self._read(address)
        self._write(address, value)
        try:
            self.typed = self._validate(self.base_mfn)
        except HypercallError:
            self._write(address, old)
            raise
        self._install_hypervisor_slots(self.base_mfn)

    def write_entry(self, entry_addr: int, value: int) -> None:
        """A kernel's own 4-byte store into half of a 64-bit entry (writable page
        tables): the whole entry is validated as by mmu_update."""
        address = entry_addr & ~7
        old = self._read(address)
        high = bool(entry_addr & 4)
        new = old & 0xFFFFFFFF | value << 32 if high else old & ~0xFFFFFFFF | value
        self.mmu_update(address, new)
        self.flush_tlb()

    def restore_write_access(self, pte_addr: int) -> None:
        """Nothing is ever downgraded on PAE (see the module's comment)."""
