"""Xen's memory isolation for a domain's page tables, in any paging mode: the current
base and the operations that change it (NEW_BASEPTR, pins, mmu_update,
update_va_mapping, the kernel's own stores), each validated by hv/validator.py against
the frame table (hv/frames.py), all or nothing.

Nothing the guest uses as a page table is ever writable by it: an explicit request
for such a mapping is refused with -EINVAL, as on Xen. An unmodified kernel maps its
own page tables writable (it ran in ring 0), so on 2-level paging such mappings found
in a new base, or stored by the kernel, are installed read-only instead (docs/ABI.md);
a write through one later faults, and gets its write access back once the frame is no
longer a page table in use (give_back_write_access, from hv/ptwr.py).

A domain built with SUPERPAGES (a patched or an unmodified kernel, never a Xen guest)
may use 4 MiB pages: hv/superpages.py.
"""

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from pvtool.abi.xen import Errno
from pvtool.hv import layout
from pvtool.hv.errors import DomainCrash, HypercallError
from pvtool.hv.frames import PINNED, PageType, is_table, page_type
from pvtool.hv.pagemodes import RULES, PagingRules
from pvtool.hv.superpages import SplitTables
from pvtool.hv.validator import Validator
from pvtool.x86 import paging
from pvtool.x86.paging import PAGE_SHIFT, PagingMode

if TYPE_CHECKING:
    from pvtool.hv.domain import Domain


class PageTables:
    """The domain's current base, its pins, and every update to its page tables."""

    def __init__(self, domain: "Domain", base_mfn: int, mode: PagingMode = PagingMode.TWO_LEVEL,
                 *, glue: bool = False, superpages: bool = False,
                 downgrade: bool | None = None, rules: PagingRules | None = None):
        """DOWNGRADE overrides the mode's rule: a patched 64-bit kernel builds its tables
        in memory it maps writable, as a 32-bit one does (docs/ABI.md). RULES replaces
        the mode's rules whole (64-bit trap-and-emulate's, pagemodes.py)."""
        self.domain = domain
        self.frames = domain.frames
        rules = rules or RULES[mode]
        self.rules = rules if downgrade is None else replace(rules, downgrade=downgrade)
        self.pae = mode is PagingMode.PAE
        self.glue = glue  # map the patched kernel's glue window in every address space
        self.base_mfn = base_mfn  # Xen's guest_table: the kernel's on 64-bit
        self._base_held = False  # the builder's (or trap mode's) tables: not validated
        self.user_base_mfn = 0  # 64-bit: guest_table_user, the user L4 (0: none)
        splits = SplitTables(domain.memory.write_phys, domain.machine.map_memory) \
            if superpages else None
        self.validator = Validator(domain.frames, domain.memory, domain.domid, self.rules,
                                   glue, splits, self.flush_tlb)
        self.entry_size = self.validator.entry_size
        self._cpu = domain.machine.cpu  # the machine's one, whichever vCPU runs
        # Cpu.write(CR3) as QEMU's function bound once: a context switch's, and a
        # 64-bit vCPU's at every change between kernel and user mode.
        self._write_cr3 = self._cpu.qemu.bound_write_cr3()
        if glue:
            self._hold_glue_data()
        # Every change to the domain's page tables goes through the validator, which
        # has guest memory forget its translations then: a hypercall's pointers need
        # no page walk while the tables stay as they are.
        domain.memory.keep_translations()

    @property
    def typed(self) -> Mapping[int, int]:
        """The domain's page tables, validated and write-protected, by level."""
        return TableLevels(self)

    @property
    def downgraded(self) -> dict[int, int]:
        """Entry address -> the read-only entry pvtool installed there."""
        return self.validator.downgraded

    def flush_tlb(self) -> None:
        self.domain.machine.cpu.flush_tlb()

    def flush_tlb_page(self, vaddr: int) -> None:
        """The kernel's invlpg of VADDR: only that page's translations go."""
        self._cpu.flush_tlb_page(vaddr)

    def hold_writable(self, mfn: int) -> None:
        """The hypervisor maps frame MFN writable itself (a backend's ring, the glue
        window's data), so it can never become a page table."""
        self.validator.hold_writable(mfn)

    def drop_writable(self, mfn: int) -> None:
        """The hypervisor no longer maps MFN (a backend let its ring go): the reference
        hold_writable took is dropped, and the frame may become a page table again."""
        self.frames.put_page_and_type(mfn)

    def _hold_glue_data(self) -> None:
        """The glue window's data pages are writable through the hypervisor's own table
        (layout.GLUE_L1), which no validation sees: were one of them a page table, the
        guest could write it through the window."""
        for entry in self.validator.entries(layout.GLUE_L1 >> PAGE_SHIFT, 1):
            if entry & paging.P and entry & paging.RW:
                self.hold_writable(paging.entry_frame(entry, self.rules.mode, 1) >> PAGE_SHIFT)

    # -- bases and pins ------------------------------------------------------------------
    def new_baseptr(self, mfn: int) -> None:
        """Make the hierarchy under MFN the address space: validated the first time
        it is used, a count increment after that (the hot path of a context switch:
        Validator.move_base, whose table is the domain's, so the owner is asked only
        otherwise)."""
        old = self.base_mfn if self._base_held else None
        if not self.validator.move_base(mfn, old):
            if self.frames.owner(mfn) != self.domain.domid:
                raise HypercallError(Errno.EINVAL, f"base frame {mfn:#x} is not the domain's")
            self.validator.switch_base(mfn, old, downgrade=self.rules.downgrade)
        self.base_mfn, self._base_held = mfn, True
        self._write_cr3(mfn << PAGE_SHIFT)
        if self.domain.trace:
            self.domain.log(f"new base {mfn:#x}")

    @property
    def has_user_base(self) -> bool:
        """Whether user mode has page tables of its own: 64-bit domains only."""
        return self.rules.user_base

    def new_user_baseptr(self, mfn: int) -> None:
        """MMUEXT_NEW_USER_BASEPTR (64-bit): the L4 user mode runs on, validated as a
        base (downgrading as the kernel's base does); 0 clears it. CR3 stays: the kernel
        makes the call (xen/arch/x86/mm.c)."""
        if mfn == self.user_base_mfn:
            return
        if mfn:
            old = self.user_base_mfn or None
            if not self.validator.move_base(mfn, old):
                self.validator.switch_base(mfn, old, downgrade=self.rules.downgrade)
        elif self.user_base_mfn:
            self.validator.put_table(self.user_base_mfn, None)
        self.user_base_mfn = mfn
        if self.domain.trace:
            self.domain.log(f"new user base {mfn:#x}")

    def load_cr3(self, *, user: bool) -> None:
        """CR3 := the user L4 in user mode, the kernel's in kernel mode (Xen's
        update_cr3, after toggle_guest_mode). Going to user mode with no user L4
        crashes the domain, as Xen's HYPERVISOR_iret does (pv/iret.c)."""
        mfn = self.user_base_mfn if user else self.base_mfn
        if not mfn:
            raise DomainCrash("Guest switching to user mode with no user page tables")
        self._write_cr3(mfn << PAGE_SHIFT)

    def hold_base(self, mfn: int) -> None:
        """Validate the hierarchy under MFN and hold it as a base that is not loaded
        yet: a vCPU's from VCPUOP_initialise (hv/vcpu_context.py)."""
        if self.frames.owner(mfn) != self.domain.domid:
            raise HypercallError(Errno.EINVAL, f"base frame {mfn:#x} is not the domain's")
        self._get_base(mfn)

    def _get_base(self, mfn: int) -> None:
        """A base's reference on MFN, a top-level table validated (downgrading as the
        mode says) the first time: a count increment after that."""
        self.validator.get_table(mfn, self.validator.top, None, downgrade=self.rules.downgrade)

    def load_base(self, mfn: int) -> None:
        """Switch to MFN, a base held already (by the vCPU the scheduler puts on the
        CPU): each vCPU keeps its own, as Xen's v->arch.guest_table."""
        self.base_mfn, self._base_held = mfn, True
        self._write_cr3(mfn << PAGE_SHIFT)

    def pin(self, mfn: int, level: int) -> None:
        """MMUEXT_PIN_Ln_TABLE: hold MFN as a table of LEVEL until unpinned. A kernel
        that pins is written for Xen: it gets Xen's refusals, never a downgrade."""
        if not 1 <= level <= self.rules.levels:
            raise HypercallError(Errno.EINVAL, f"a {self.rules.name} domain has no "
                                 f"level-{level} tables")
        if self.frames.owner(mfn) != self.domain.domid:
            raise HypercallError(Errno.EINVAL, f"frame {mfn:#x} cannot be pinned")
        if self.frames.type_info(mfn) & PINNED:
            raise HypercallError(Errno.EINVAL, f"frame {mfn:#x} is already pinned")
        self.validator.get_table(mfn, level, None, downgrade=False)
        self.frames.set_type_info(mfn, self.frames.type_info(mfn) | PINNED)

    def unpin(self, mfn: int) -> None:
        """MMUEXT_UNPIN_TABLE: the table stays validated while anything else holds it."""
        info = self.frames.type_info(mfn)
        if not info & PINNED:
            raise HypercallError(Errno.EINVAL, f"frame {mfn:#x} is not pinned")
        self.frames.set_type_info(mfn, info & ~PINNED)
        self.validator.put_table(mfn, None)

    # -- updates -----------------------------------------------------------------------
    def mmu_update(self, address: int, value: int) -> None:
        """One MMU_NORMAL_PT_UPDATE at machine ADDRESS, in a frame of the domain's. Into
        a page table in use it is a validated entry update (mod_lN_entry); any other
        frame is written as ordinary memory, a table nothing holds devalidated first:
        Xen's do_mmu_update takes a frame whose page_lock fails (no type reference) as
        PGT_writable_page and writes it with paging_write_guest_entry, unvalidated
        (xen/arch/x86/mm.c), which is how a kernel fills a table before it uses it.
        The TLB is flushed as write_entry flushes a kernel's own store: an L1 entry's
        old translation stays until the guest's invlpg or flush (Xen's mod_l1_entry
        flushes nothing), a table above L1 is flushed at once."""
        mfn, offset = address >> PAGE_SHIFT, address & (paging.PAGE_SIZE - 1)
        if offset % self.entry_size or self.frames.owner(mfn) != self.domain.domid:
            raise HypercallError(Errno.EINVAL, f"{address:#x} is not an entry in a frame "
                                 "of the domain's")
        if self.validator.in_use(mfn):
            self.validator.update_entry(mfn, offset // self.entry_size, value,
                                        downgrade=False)
            if page_type(self.frames.type_info(mfn)) != PageType.L1:
                self.flush_tlb()  # a refused entry changed nothing: no flush owed
            return
        if value >> 8 * self.entry_size:  # what update_entry refuses, plain or not
            raise HypercallError(Errno.EINVAL, f"a {self.rules.name} entry has no high "
                                 f"half ({value:#x})")
        self.make_writable(mfn)
        self.validator.write_entry(address, value)

    def update_va_mapping(self, vaddr: int, pte: int) -> None:
        mfn, index = self.l1_slot_for(vaddr)
        self.validator.update_entry(mfn, index, pte, downgrade=False)

    def l1_slot_for(self, vaddr: int) -> tuple[int, int]:
        """(L1 frame, index) of the entry mapping VADDR in the current base."""
        for start, end in self.rules.guest_ranges:  # is_guest_range(vaddr, 1), inline
            if start <= vaddr < end:
                break
        else:
            raise HypercallError(Errno.EINVAL, f"{vaddr:#x} is in the hypervisor's range")
        mode, table = self.rules.mode, self.base_mfn
        for level in range(self.rules.levels, 1, -1):
            entry = self.validator.read_entry(
                self.validator.entry_address(table, paging.index(vaddr, mode, level)))
            if not entry & paging.P or paging.is_large(entry, mode, level):
                raise HypercallError(Errno.EINVAL, f"no page table maps {vaddr:#x}")
            table = paging.entry_frame(entry, mode, level) >> PAGE_SHIFT
        if self.frames.owner(table) != self.domain.domid:  # a split 4 MiB page
            raise HypercallError(Errno.EINVAL, f"{vaddr:#x} is in a 4 MiB page")
        return table, paging.index(vaddr, mode, 1)

    # -- the kernel's own stores (hv/ptwr.py) -------------------------------------------
    def in_use(self, mfn: int) -> bool:
        """Whether frame MFN is a page table that a base or a pin holds."""
        return self.validator.in_use(mfn)

    def read_entry(self, address: int) -> int:
        """The entry at ADDRESS as the guest wrote it (its 4 MiB entry, not the link
        to the split table installed in its place)."""
        return self.validator.superpages.get(address) or self.validator.read_entry(address)

    def write_entry(self, entry_addr: int, value: int, old: int | None = None) -> None:
        """A kernel's own store of a whole entry into a page table in use (writable
        page tables): validated as mmu_update does, then written. OLD: the entry as
        read_entry gave it, if the caller has it (an L1's is what memory holds, which
        then is not read again; an upper level's may be a 4 MiB entry's guest view,
        and memory is read). A store into an L1
        leaves the TLB as the store would on the bare machine, for the kernel's own
        invlpg, as Xen's ptwr emulation does (xen/arch/x86/pv/ro-page-fault.c): no
        frame becomes a page table without a flush (Validator.get_table), so a stale
        translation never reaches one. Upper levels are flushed at once."""
        mfn = entry_addr >> PAGE_SHIFT
        index = (entry_addr & (paging.PAGE_SIZE - 1)) // self.entry_size
        if page_type(self.frames.type_info(mfn)) == PageType.L1:
            self.validator.update_entry(mfn, index, value, downgrade=self.rules.downgrade,
                                        old=old)
        else:
            self.validator.update_entry(mfn, index, value, downgrade=self.rules.downgrade)
            self.flush_tlb()

    def give_back_write_access(self, entry_addr: int) -> bool:
        """A write faulted through the entry at ENTRY_ADDR. If pvtool made it read-only
        and the frame it maps is no page table in use any more, make it writable again
        (a table nothing holds is devalidated first) and say so."""
        installed = self.downgraded.get(entry_addr)
        if installed is None or self.read_entry(entry_addr) != installed:
            return False
        frame = paging.entry_frame(installed, self.rules.mode, 1) >> PAGE_SHIFT
        mfn = entry_addr >> PAGE_SHIFT
        index = (entry_addr & (paging.PAGE_SIZE - 1)) // self.entry_size
        with self.frames.transaction():
            self.validator.release(frame)
            self.validator.update_entry(mfn, index, installed | paging.RW, downgrade=False)
        self.flush_tlb()
        return True

    def make_writable(self, mfn: int) -> None:
        """The hypervisor is about to write frame MFN for the guest as ordinary memory
        (update_descriptor): never into a page table in use; one nothing holds is
        devalidated first."""
        with self.frames.transaction():
            self.validator.release(mfn)


class TableLevels(Mapping):
    """A domain's page-table frames and their levels, read from the frame table."""

    def __init__(self, tables: PageTables):
        self._frames = tables.frames
        self._domid = tables.domain.domid

    def __getitem__(self, mfn: int) -> int:
        info = self._frames.type_info(mfn)
        if not is_table(info) or self._frames.owner(mfn) != self._domid:
            raise KeyError(mfn)
        return page_type(info)

    def __iter__(self) -> Iterator[int]:
        return (mfn for mfn, _ in self._frames.tables() if self._frames.owner(mfn) == self._domid)

    def __len__(self) -> int:
        return sum(1 for _ in self)
