"""Xen's page-type validation (xen/arch/x86/mm.c: get_page_type, alloc_lN_table,
get_page_from_lNe, mod_lN_entry), one validator for every paging mode: the format
comes from x86/paging.py, each mode's own rules from hv/pagemodes.py.

A page table is validated once, when something first holds it as a table of its
level: a base (NEW_BASEPTR), a pin, or an entry of another table. Validating takes a
reference for each present entry: an upper-level entry a type reference on the table
it links (validating that one in turn), an L1 entry a general reference on the frame it
maps and, if writable, a writable type reference. From then on the counts keep it
valid: another holder is an increment, and a change to one entry drops the old
entry's references and takes the new one's.

Xen devalidates a table when its type count falls to zero. An unmodified kernel never
pins, so each context switch would then revalidate the whole address space; pvtool
keeps such a table validated and write-protected instead. A table is live while a
base or a pin holds it, directly or through the tables that link it; one that is not
is devalidated (its references dropped, its holders first) only at the moment Xen's
answer would differ: the guest writes into it, asks to map it writable, or uses it as
another type (docs/ABI.md). A live table is never writable and never two types.

A domain that opts in (SUPERPAGES) may use 4 MiB entries: each is split into an L1 the
hypervisor owns, validated as any L1 (hv/superpages.py says why).
"""

import struct
from collections.abc import Callable

from pvtool.abi.xen import Errno
from pvtool.hv.errors import HypercallError
from pvtool.hv.frames import (
    KIND,
    ONE,
    TYPE_MASK,
    VALIDATED,
    XEN_L2,
    FrameTable,
    PageType,
    is_table,
    page_type,
    type_count,
)
from pvtool.hv.pagemodes import PagingRules
from pvtool.hv.superpages import ABOVE_4GIB, SplitTables
from pvtool.machine.memory import GuestMemory
from pvtool.x86 import paging
from pvtool.x86.paging import PAGE_SHIFT

_P, _RW = paging.P, paging.RW  # read on every kernel store into an L1 (_update_l1e): globals

# The SDM's names of the tables of each level (Vol. 3A, ch. 4).
TABLE_NAMES = {1: "page table", 2: "page directory", 3: "page-directory-pointer table",
               4: "PML4 table"}


def refuse(why: str) -> HypercallError:
    return HypercallError(Errno.EINVAL, why)


def where(site: tuple[int, int, int]) -> str:
    """An entry named for messages, from its (level, table, index), formatted only
    when a refusal needs it: validation is a loop over every entry."""
    level, mfn, index = site
    return f"{'page table' if level == 1 else f'L{level}'} {mfn:#x}[{index}]"


def prefix(site: tuple[int, int, int] | None) -> str:
    return f"{where(site)}: " if site else ""


class Validator:
    """The page-table frames of one domain, in one paging mode."""

    def __init__(self, frames: FrameTable, memory: GuestMemory, domid: int,
                 rules: PagingRules, glue: bool, splits: SplitTables | None = None,
                 flush_tlb: Callable[[], None] = lambda: None):
        self.frames = frames
        self.memory = memory
        self.flush_tlb = flush_tlb  # the CPU's TLB, flushed when a frame becomes a table
        self.domid = domid
        self.rules = rules
        self.top = rules.levels
        self.roots: dict[int, int] = {}  # table -> bases, pins and validations holding it
        self.downgraded: dict[int, int] = {}  # entry address -> the read-only entry installed
        # 4 MiB pages, for a domain that opts in (rules.superpages): the split tables,
        # and entry address -> the guest's 4 MiB entry, where a link was installed.
        self.splits = splits if rules.superpages else None
        self.superpages: dict[int, int] = {}
        mode = rules.mode
        self.entry_size = paging.entry_size(mode)
        code = "I" if self.entry_size == 4 else "Q"
        self._entry = struct.Struct(f"<{code}")
        levels = range(1, self.top + 1)
        self._table = {n: struct.Struct(f"<{paging.entry_count(mode, n)}{code}") for n in levels}
        self._address = {n: paging.address_mask(mode, n) for n in levels}
        # EFER.NXE is off in a 32-bit PV domain: bit 63 is reserved too.
        self._forbidden = {n: self._forbidden_bits(n) for n in levels}
        if rules.top_allowed_flags is not None:  # its flags Xen's, not the format's
            self._forbidden[self.top] &= ~0xFFF
            self._forbidden[self.top] |= 0xFFF & ~rules.top_allowed_flags
        self._large = {n: paging.is_large(paging.PS, mode, n) for n in levels}
        # The bits of an L1 entry its references depend on: the frame, P and RW.
        self._l1_counted = self._address[1] | paging.P | paging.RW
        # What every L1 store reads (_update_l1e), as plain attributes.
        self._l1_address, self._l1_forbidden = self._address[1], self._forbidden[1]
        self._adjust = rules.adjust
        self._hypervisor_entries = rules.hypervisor_entries(glue)

    def _forbidden_bits(self, level: int) -> int:
        """The bits a present entry of LEVEL may not set; PS, where the format allows a
        large page, is left to _check_bits, which names it."""
        mode, allowed = self.rules.mode, self.rules.guest_flags
        if allowed is None:
            return paging.reserved_bits(mode, level, nxe=False)
        large = paging.PS if paging.is_large(paging.PS, mode, level) else 0
        return (1 << 64) - 1 & ~(allowed[level] | paging.address_mask(mode, level) | large)

    # -- entries in memory -----------------------------------------------------------
    def entries(self, mfn: int, level: int) -> tuple[int, ...]:
        table = self._table[level]
        return table.unpack(self.memory.read_phys(mfn << PAGE_SHIFT, table.size))

    def read_entry(self, address: int) -> int:
        return self.memory.load_entry(address, self._entry)

    def write_entry(self, address: int, value: int, old: int | None = None) -> None:
        """Write an entry, journaled; OLD: its value, if the caller has read it."""
        self.frames.journal_undo(self._store, address,
                                 self.read_entry(address) if old is None else old)
        self._store(address, value)

    def _store(self, address: int, value: int) -> None:
        """Write an entry and have guest memory forget what it changes: only the
        translations through it if it is an L1's (the leaf of every 4 KiB
        translation), all of them for any other frame's."""
        self.memory.write_phys(address, self._entry.pack(value))
        if self.frames.type_info(address >> PAGE_SHIFT) & TYPE_MASK == PageType.L1:
            self.memory.forget_translations_through(address)
        else:
            self.memory.forget_translations()

    def entry_address(self, mfn: int, index: int) -> int:
        return (mfn << PAGE_SHIFT) + index * self.entry_size

    def entry_count(self, level: int) -> int:
        return self._table[level].size // self.entry_size

    def hypervisor_slots(self, level: int, info: int) -> range:
        """The slots of a table of LEVEL (type word INFO) that are the hypervisor's."""
        rules = self.rules
        if level == rules.hypervisor_level and (rules.hypervisor_via is None or info & XEN_L2):
            return rules.hypervisor_slots
        return range(0)

    # -- what holds a table ------------------------------------------------------------
    def is_live(self, mfn: int) -> bool:
        """Whether a base, a pin or a validation in progress holds table MFN, directly
        or through the tables that link it (upper levels only: no cycles)."""
        if mfn in self.roots:
            return True
        for holder in self.frames.holders(mfn):  # noqa: SIM110 (any() costs a generator)
            if self.is_live(holder):
                return True
        return False

    def in_use(self, mfn: int) -> bool:
        return is_table(self.frames.type_info(mfn)) and self.is_live(mfn)

    def get_table(self, mfn: int, level: int, holder: int | None, *, downgrade: bool,
                  site: tuple[int, int, int] | None = None, xen: bool = False,
                  split: bool = False) -> None:
        """Take a type reference on MFN as a table of LEVEL for HOLDER (the linking
        table, or None for a base or a pin), validating it if it is not yet. XEN: it
        is the table that holds the hypervisor's slots (PAE's L2 under L3 slot 3);
        SPLIT: the hypervisor's split of a 4 MiB entry; SITE: the entry linking it."""
        want = level | (XEN_L2 if xen else 0)
        info = self.frames.type_info(mfn)
        # A validated table of this kind is a count increment, which cannot fail: the
        # hot path of a context switch. Anything else is looked at closely, and undone
        # whole if refused.
        if info & (KIND | VALIDATED) == want | VALIDATED and not (xen and type_count(info)) \
                and (self.frames.owner(mfn) == self.domid or split):
            self._hold(mfn, info + ONE, holder)
            return
        with self.frames.transaction():
            info = self._make_table(mfn, want, downgrade, site, split)
            fresh = not is_table(info)
            self._hold(mfn, (want if fresh else info) + ONE, holder)
            if fresh:
                self._validate(mfn, level, want, downgrade)
                self.frames.set_type_info(mfn, self.frames.type_info(mfn) | VALIDATED)
        # The TLB may still map the frame writable: through an entry just downgraded,
        # or one an L1 update dropped without a flush (PageTables.write_entry). Xen
        # flushes when a frame's type leaves PGT_writable_page (_get_page_type,
        # xen/arch/x86/mm.c); pvtool does once the outermost operation is done (the
        # tables a new base links are validated inside its own), and an entry update
        # that links a new table flushes when it is done (its callers in pagetables.py).
        if not self.frames.in_transaction:
            self.flush_tlb()

    def move_base(self, mfn: int, old: int | None) -> bool:
        """switch_base's hot path: to a top-level table validated already, moving a
        base's reference from OLD (None: none) to MFN is Xen's count increment and
        decrement, which cannot fail, made in place (none at all when MFN is OLD).
        Such a table is the domain's (only the domain's frames become tables above
        L1: _make_table), so get_table's owner check has nothing to add. False, and
        nothing changed, for any other MFN: switch_base's general path then."""
        return self.frames.move_validated_base(mfn, old, self.top, self.roots)

    def switch_base(self, mfn: int, old: int | None, *, downgrade: bool) -> None:
        """Move a base's reference from OLD (None: no base held) to MFN where move_base
        cannot, as NEW_BASEPTR and NEW_USER_BASEPTR then do: get_table(MFN), validating
        it with every check, then put_table(OLD)."""
        self.get_table(mfn, self.top, None, downgrade=downgrade)
        if old is not None:
            self.put_table(old, None)

    def _hold(self, mfn: int, info: int, holder: int | None) -> None:
        """The references of get_table: general, type (INFO, counted), and the
        holder's link (or a root's)."""
        self.frames.get_page_and_type(mfn, info)
        if holder is None:
            self.frames.count_up(self.roots, mfn)
        else:
            self.frames.link(mfn, holder)

    def put_table(self, mfn: int, holder: int | None) -> None:
        """Drop a type reference. At zero the table stays validated (see above)."""
        self.frames.put_page_and_type(mfn)
        if holder is None:
            self.frames.count_down(self.roots, mfn)
        else:
            self.frames.unlink(mfn, holder)

    def _make_table(self, mfn: int, want: int, downgrade: bool,
                    site: tuple[int, int, int] | None, split: bool) -> int:
        """Check that MFN may be used as a table of kind WANT and clear the way: a table
        that is not live gives up another type (or, the hypervisor's L2, its other
        holders), a frame its writable mappings. Returns the frame's type word then."""
        if self.frames.owner(mfn) != self.domid and not split:
            raise refuse(f"{where(site)} points at frame {mfn:#x}, not the domain's"
                         if site else f"frame {mfn:#x} is not the domain's")
        info = self.frames.type_info(mfn)
        other_kind = info & KIND != want
        if is_table(info) and (other_kind or want & XEN_L2 and type_count(info)):
            if self.is_live(mfn):
                raise refuse(self._conflict(mfn, info, want, prefix(site)))
            if other_kind:
                self.devalidate(mfn)
            else:
                self._devalidate_holders(mfn)
            info = self.frames.type_info(mfn)
        if page_type(info) == PageType.WRITABLE:
            self._unmap_writable(mfn, downgrade)
            info = 0
        return info

    @staticmethod
    def _conflict(mfn: int, info: int, want: int, at: str) -> str:
        if (info | want) & XEN_L2:
            return f"{at}the hypervisor's L2 {mfn:#x} is used elsewhere"
        return (f"{at}frame {mfn:#x} is a {TABLE_NAMES[page_type(info)]}: it cannot "
                f"also be a {TABLE_NAMES[page_type(want)]}")

    # -- writable mappings -------------------------------------------------------------
    def _get_writable(self, mfn: int, address: int, downgrade: bool,
                      site: tuple[int, int, int] | None) -> bool:
        """Take a writable reference on MFN for the entry at ADDRESS; False if MFN is a
        page table and DOWNGRADE says to map it read-only instead."""
        info = self.frames.type_info(mfn)
        if is_table(info):
            if downgrade:
                return False
            if self.is_live(mfn):
                raise refuse(f"{prefix(site)}frame {mfn:#x} is a page table: "
                             "no writable mapping")
            self.devalidate(mfn)
            info = 0
        self.frames.set_type_info(mfn, (info or PageType.WRITABLE) + ONE)
        self.frames.add_writable_at(mfn, address)
        return True

    def _put_writable(self, mfn: int, address: int) -> None:
        info = self.frames.type_info(mfn) - ONE
        self.frames.set_type_info(mfn, 0 if info == PageType.WRITABLE else info)
        self.frames.drop_writable_at(mfn, address)

    def hold_writable(self, mfn: int) -> None:
        """A writable mapping of the hypervisor's own (a backend's ring, the glue
        window's data), taken when the domain is built, before any frame is a page
        table: from then on the frame can never become one."""
        self.frames.get_page(mfn)
        self.frames.set_type_info(mfn, (self.frames.type_info(mfn) or PageType.WRITABLE) + ONE)

    def _unmap_writable(self, mfn: int, downgrade: bool) -> None:
        """MFN is to become a page table: its writable mappings go, read-only where
        DOWNGRADE allows, or by devalidating the tables no base or pin holds; what is
        left (live, or the hypervisor's own) refuses it."""
        for address in self.frames.writable_at(mfn):
            table = address >> PAGE_SHIFT
            if downgrade:
                value = self.read_entry(address) & ~paging.RW
                self.write_entry(address, value)
                self._put_writable(mfn, address)
                self.frames.journal_set(self.downgraded, address, value)
            elif self.frames.type_info(table) & VALIDATED and not self.is_live(table):
                self.devalidate(table)
        if type_count(self.frames.type_info(mfn)):
            raise refuse(f"frame {mfn:#x} is mapped writable")

    def release(self, mfn: int) -> None:
        """MFN is about to be written as ordinary memory: a table that no base or pin
        holds is devalidated; a live one refuses."""
        info = self.frames.type_info(mfn)
        if not is_table(info):
            return
        if self.is_live(mfn):
            raise refuse(f"frame {mfn:#x} is a page table")
        self.devalidate(mfn)

    # -- validation ----------------------------------------------------------------------
    def _validate(self, mfn: int, level: int, info: int, downgrade: bool) -> None:
        """Take the references of every entry of table MFN (Xen's alloc_lN_table); a
        writable mapping of a page table is made read-only if DOWNGRADE says so. The
        hypervisor's slots are written, whatever the guest put there."""
        entries = self.entries(mfn, level)
        skip = self.hypervisor_slots(level, info)
        for index, entry in enumerate(entries):
            if index in skip:
                continue
            if level == self.top:
                self._check_required(mfn, index, entry)
            if entry & paging.P:
                installed = self._get_entry(mfn, level, index, entry, downgrade, whole=True)
                if installed != entry:
                    self.write_entry(self.entry_address(mfn, index), installed)
        for slot in skip:
            value = self._hypervisor_entries.get(slot, 0)
            if entries[slot] != value:
                self.write_entry(self.entry_address(mfn, slot), value)

    def devalidate(self, mfn: int) -> None:
        """Make table MFN, which nothing live holds, an ordinary frame again: the tables
        linking it first, then every reference its entries hold (Xen's free_lN_table).
        The guest may write it from now on: no translation through it is kept."""
        self.memory.forget_translations()
        self._devalidate_holders(mfn)
        info = self.frames.type_info(mfn)
        level = page_type(info)
        skip = self.hypervisor_slots(level, info)
        for index, entry in enumerate(self.entries(mfn, level)):
            if entry & paging.P and index not in skip:
                self._put_entry(mfn, level, index, entry)
        self.frames.set_type_info(mfn, None)

    def _devalidate_holders(self, mfn: int) -> None:
        for holder in tuple(self.frames.holders(mfn)):
            if self.frames.type_info(holder) & VALIDATED:
                self.devalidate(holder)

    def _check_required(self, mfn: int, index: int, entry: int) -> None:
        """The top-level slot leading to the hypervisor's slots must be present."""
        if index == self.rules.hypervisor_via and not entry & paging.P:
            raise refuse(f"{where((self.top, mfn, index))} is empty: the "
                         f"L{self.top - 1} under slot {index} holds the hypervisor's mappings")

    # -- one entry ---------------------------------------------------------------------
    def _get_entry(self, mfn: int, level: int, index: int, entry: int, downgrade: bool,
                   *, whole: bool) -> int:
        """Take the references of present ENTRY at MFN[INDEX] (Xen's get_page_from_lNe)
        and return it as it is to be installed. WHOLE: a whole table is being
        validated (the refusal names the entry)."""
        site = (level, mfn, index)
        self._check_bits(site, entry)
        if self.rules.adjust is not None:
            entry = self.rules.adjust(level, entry)
        frame = (entry & self._address[level]) >> PAGE_SHIFT
        if level == 1:
            return self._get_l1e(site, frame, entry, downgrade, whole)
        if entry & paging.PS and self._large[level]:
            return self._get_superpage(site, entry, downgrade)
        if frame == mfn and level == self.top and self.rules.linear_mapping:
            if entry & paging.RW:
                raise refuse(f"{where(site)} maps the {TABLE_NAMES[level]} itself writable")
            return entry
        xen = level == self.top and index == self.rules.hypervisor_via
        self.get_table(frame, level - 1, mfn, downgrade=downgrade, site=site, xen=xen)
        return entry

    def _get_superpage(self, site: tuple[int, int, int], entry: int, downgrade: bool) -> int:
        """Validate 4 MiB ENTRY as the split table standing for it; return the link
        to that table, which is installed in its place."""
        split = self.splits.table_for(entry)
        if not self.frames.type_info(split) & VALIDATED:
            self.splits.fill(split)
        try:
            self.get_table(split, 1, site[1], downgrade=downgrade, split=True)
        except HypercallError as refusal:
            raise refuse(f"{where(site)} maps the 4 MiB page at "
                         f"{paging.entry_frame(entry, self.rules.mode, 2):#x}: "
                         f"{refusal.why}") from None
        address = self.entry_address(site[1], site[2])
        self.frames.journal_set(self.superpages, address, entry)
        return self.splits.link(split)

    def _check_bits(self, site: tuple[int, int, int], entry: int) -> None:
        level = site[0]
        if entry & self._forbidden[level]:
            if level == self.top and self.rules.top_allowed_flags is not None:
                raise refuse(f"{where(site)} = {entry:#x}: an L{level} entry may carry "
                             f"only the flags {self.rules.top_allowed_flags:#x}")
            if self.rules.guest_flags is not None:
                raise refuse(f"{where(site)} = {entry:#x} sets bits "
                             f"{entry & self._forbidden[level]:#x}, which a guest may not set")
            raise refuse(f"{where(site)} = {entry:#x} sets reserved bits")
        if entry & paging.PS and self._large[level]:
            if self.splits is None:
                raise refuse(f"{where(site)}: superpages are not supported")
            if entry & ABOVE_4GIB:
                raise refuse(f"{where(site)} = {entry:#x}: a 4 MiB page above 4 GiB")

    def _get_l1e(self, site: tuple[int, int, int], frame: int, entry: int, downgrade: bool,
                 whole: bool) -> int:
        if not self.frames.may_map(self.domid, frame):
            raise refuse(f"{where(site)} maps frame {frame:#x}, which the domain does not "
                         "own" if whole else f"frame {frame:#x} is not the domain's")
        self.frames.get_page(frame)
        address = self.entry_address(site[1], site[2])
        if entry & paging.RW and not self._get_writable(frame, address, downgrade,
                                                        site if whole else None):
            entry &= ~paging.RW
            self.frames.journal_set(self.downgraded, address, entry)
        return entry

    def _put_entry(self, mfn: int, level: int, index: int, entry: int) -> None:
        """Drop the references present ENTRY at MFN[INDEX] holds (put_page_from_lNe)."""
        frame = (entry & self._address[level]) >> PAGE_SHIFT
        if level == 1:
            self.frames.put_page(frame)
            if entry & paging.RW:
                self._put_writable(frame, self.entry_address(mfn, index))
        elif not (frame == mfn and level == self.top and self.rules.linear_mapping):
            self.put_table(frame, mfn)
            self.frames.journal_set(self.superpages, self.entry_address(mfn, index), None)

    def update_entry(self, mfn: int, index: int, value: int, *, downgrade: bool,
                     old: int | None = None) -> None:
        """Replace entry INDEX of table MFN (validated) with VALUE, as Xen's
        mod_lN_entry: the old entry's references dropped, the new one's taken; nothing
        changes if the new entry is refused. OLD: the entry in memory, if the caller
        has just read it. An upper-level entry may link a table validated here: the
        caller flushes the TLB once it is done (get_table)."""
        info = self.frames.type_info(mfn)
        level = page_type(info)
        if level > 1:  # an L1 has neither the hypervisor's slots nor missing entries
            self._check_slot(level, index, info)
        if value >> 8 * self.entry_size:
            raise refuse(f"a {self.rules.name} entry has no high half ({value:#x})")
        address = self.entry_address(mfn, index)
        if old is None:
            old = self.read_entry(address)
        if level == 1 and not self.frames.in_transaction \
                and self._update_l1e(mfn, index, address, old, value):
            return
        with self.frames.transaction():
            if level == self.top:
                self._check_required(mfn, index, value)
            self.frames.journal_set(self.downgraded, address, None)
            if old & paging.P:
                self._put_entry(mfn, level, index, old)
            if value & paging.P:
                value = self._get_entry(mfn, level, index, value, downgrade, whole=False)
            self.write_entry(address, value, old)

    def store_l1e(self, address: int, value: int, old: int, *, downgrade: bool) -> None:
        """A kernel's store of VALUE into the L1 entry at ADDRESS, which holds OLD
        (writable page tables, hv/ptwr.py): update_entry with what a page table in
        use already settles (its level, its slot) left out."""
        mfn = address >> PAGE_SHIFT
        index = (address & (paging.PAGE_SIZE - 1)) // self.entry_size
        if self.frames.in_transaction or not self._update_l1e(mfn, index, address, old, value):
            self.update_entry(mfn, index, value, downgrade=downgrade, old=old)

    def _update_l1e(self, mfn: int, index: int, address: int, old: int, value: int) -> bool:
        """update_entry for an L1 entry with no journal, as Xen's mod_l1_entry
        (xen/arch/x86/mm.c) needs none: every check that can refuse VALUE comes before
        the first change, so a refusal leaves no trace, and after it nothing can fail.
        Xen's order: the new entry's references taken, the entry written, the old
        one's dropped. False, having changed nothing, when VALUE maps a page table
        writable: making way for it (a downgrade, a devalidation) is the journaled
        path's."""
        frames, address_mask = self.frames, self._l1_address
        if value & _P:
            if value & self._l1_forbidden:
                self._check_bits((1, mfn, index), value)
            if self._adjust is not None:
                value = self._adjust(1, value)
            # Xen's fast path for sufficiently similar mappings (mod_l1_entry's
            # !l1e_has_changed): the same frame with the same P and RW holds the same
            # references, so only the entry changes.
            if old & _P and not (old ^ value) & self._l1_counted:
                self._write_l1e(address, value)
                return True
            frame = (value & address_mask) >> PAGE_SHIFT
            if not frames.may_map(self.domid, frame):
                raise refuse(f"frame {frame:#x} is not the domain's")
            writable = value & _RW
            if writable and is_table(frames.type_info(frame)):
                return False
            frames.get_l1_references(frame, address, writable)
        self._write_l1e(address, value)
        if old & _P:
            frames.put_l1_references((old & address_mask) >> PAGE_SHIFT, address,
                                     old & _RW)
        return True

    def _write_l1e(self, address: int, value: int) -> None:
        self.downgraded.pop(address, None)
        self.memory.store_entry(address, self._entry, value)  # in place: GuestMemory's why
        self.memory.forget_translations_through(address)

    def _check_slot(self, level: int, index: int, info: int) -> None:
        if index in self.hypervisor_slots(level, info):
            raise refuse(f"L{level} slot {index} belongs to the hypervisor")
        if index >= self.entry_count(level):
            raise refuse(f"L{level} entry {index}: a {self.rules.name} L{level} has "
                         f"{self.entry_count(level)}")
