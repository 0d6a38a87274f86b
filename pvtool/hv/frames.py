"""The frame table: what the hypervisor knows of each machine frame, as Xen's struct
page_info keeps it (xen/include/asm-x86/mm.h).

- The owner: the domain the frame belongs to, DOMID_XEN for the hypervisor's own. A
  frame of the hypervisor's may be shared with a domain (its shared_info page), which
  may then map it but never make it a page table.
- count_info: general references, one for every mapping of the frame, every link to
  it from a page table, and every base or pin holding it.
- type_info: what the frame is used as (PageType), how many references hold it as
  that (the type count), and whether it is validated (its entries checked and their
  references taken) and pinned, packed into one word as Xen does.
- Beside Xen's fields, two indexes the validator needs: the tables that link each
  page table (its holders), and where each frame is mapped writable, so that the
  writable mappings of a frame becoming a page table are found without a scan.

The state is sparse: a frame that nothing maps or types has no entry at all, so a
domain of 1 GiB (262,144 frames) pays for the frames it uses, not for those it has.
Ownership is kept as runs of frames (a domain's RAM is one).

Every change can be journaled (`transaction`): an operation refused halfway is undone
whole, as Xen unwinds a partly validated table, and leaves no trace. Outside a
transaction a change is made in place, with no undo record: for an operation that
checks everything that could refuse it before its first change (a validated base
switched to, an L1 entry updated: Validator.update_entry), as Xen's mod_l1_entry
needs no unwinding either.
"""

from collections.abc import Callable, Iterator
from enum import IntEnum

from pvtool.abi.xen import DOMID_XEN
from pvtool.hv import layout
from pvtool.x86.paging import PAGE_SHIFT


class PageType(IntEnum):
    """Xen's PGT_* types; a page table's is its level."""

    NONE = 0
    L1 = 1
    L2 = 2
    L3 = 3
    L4 = 4
    WRITABLE = 7  # PGT_writable_page: mapped writable, so no page table
    SHARED = 8  # a hypervisor frame shared with a domain, writable by it (shared_info)


# type_info, packed: the type in the low bits, the flags, then the type count.
TYPE_MASK = 0xF
PINNED = 1 << 4  # PGT_pinned
VALIDATED = 1 << 5  # PGT_validated
XEN_L2 = 1 << 6  # PGT_pae_xen_l2: the PAE L2 that holds the hypervisor's slots
KIND = TYPE_MASK | XEN_L2  # what two uses of a frame must agree on
COUNT_SHIFT = 8
ONE = 1 << COUNT_SHIFT  # one type reference

_MISSING = object()
# Read on every L1 update and every kernel store into a page table: an enum member's
# lookup costs about 0.1 us, a global's a tenth of that.
_WRITABLE = int(PageType.WRITABLE)
_L1, _L4 = int(PageType.L1), int(PageType.L4)


def page_type(info: int) -> int:
    return info & TYPE_MASK


def type_count(info: int) -> int:
    return info >> COUNT_SHIFT


def is_table(info: int) -> bool:
    return _L1 <= info & TYPE_MASK <= _L4


def _drop_one(store: dict, key) -> None:
    """STORE[KEY] -= 1, the key gone at zero: how every count of the table is kept (an
    absent key is a count of zero), outside the journal (FrameTable.count_down)."""
    count = store[key]
    if count > 1:
        store[key] = count - 1
    else:
        del store[key]


def _restore(store: dict, key, old) -> None:
    if old is _MISSING:
        store.pop(key, None)
    else:
        store[key] = old


class FrameTable:
    """Every machine frame's owner and page_info, kept only for the frames in use."""

    def __init__(self):
        self._runs: list[tuple[int, int, int]] = []  # (first, end, owner)
        self._shared: dict[int, int] = {}  # mfn -> the domain it is shared with
        self._count_info: dict[int, int] = {}
        self._type_info: dict[int, int] = {}
        self._holders: dict[int, dict[int, int]] = {}  # table -> {linking table: links}
        self._writable_at: dict[int, int | set[int]] = {}  # mfn -> entry address(es)
        self._journal: list[tuple] | None = None  # undo records of the open transaction
        self._depth = 0  # transactions open, nested

    # -- ownership -----------------------------------------------------------------
    def assign(self, domid: int, first: int, count: int) -> None:
        """Give frames FIRST .. FIRST+COUNT-1 to DOMID (over an earlier assignment)."""
        self._runs.insert(0, (first, first + count, domid))

    def share(self, mfn: int, domid: int) -> None:
        """Let DOMID map the hypervisor's frame MFN, writable (share_xen_page_with_guest)."""
        self._shared[mfn] = domid
        self._type_info[mfn] = PageType.SHARED | VALIDATED

    def owner(self, mfn: int) -> int | None:
        for first, end, domid in self._runs:
            if first <= mfn < end:
                return domid
        return None

    def may_map(self, domid: int, mfn: int) -> bool:
        """Whether DOMID may map MFN: its own frames and those shared with it."""
        return self.owner(mfn) == domid or self._shared.get(mfn) == domid

    # -- count_info and type_info --------------------------------------------------
    def refs(self, mfn: int) -> int:
        return self._count_info.get(mfn, 0)

    # Outside a transaction a count changes in place, with no undo record: the hot
    # paths (a base switched to, an L1 entry updated) run there.
    def get_page(self, mfn: int) -> None:
        self.count_up(self._count_info, mfn)

    def put_page(self, mfn: int) -> None:
        self.count_down(self._count_info, mfn)

    def get_page_and_type(self, mfn: int, info: int) -> None:
        """A general reference and the type word INFO, its count already raised."""
        self.count_up(self._count_info, mfn)
        if self._journal is not None:
            self._journal.append((_restore, self._type_info, mfn,
                                  self._type_info.get(mfn, _MISSING)))
        self._type_info[mfn] = info

    def put_page_and_type(self, mfn: int) -> None:
        """Drop a general and a type reference (the type stays at a count of zero)."""
        self.count_down(self._count_info, mfn)
        if self._journal is not None:
            self._journal.append((_restore, self._type_info, mfn, self._type_info[mfn]))
        self._type_info[mfn] -= ONE

    def move_validated_base(self, new: int, old: int | None, level: int, roots: dict) -> bool:
        """A base moved from OLD (None: none) to NEW, if NEW is a validated table of
        LEVEL and no transaction is open (Validator.move_base): NEW's general
        reference, type reference and count in ROOTS taken, OLD's dropped, as
        get_page_and_type, count_up and their put and count_down would, in one call:
        the hot path of a context switch. False, and nothing changed, otherwise."""
        types = self._type_info
        info = types.get(new, 0)
        if info & (KIND | VALIDATED) != level | VALIDATED or self._depth:
            return False
        if new == old:
            return True
        counts = self._count_info
        counts[new] = counts.get(new, 0) + 1
        types[new] = info + ONE
        roots[new] = roots.get(new, 0) + 1
        if old is not None:
            types[old] -= ONE
            _drop_one(counts, old)
            _drop_one(roots, old)
        return True

    def type_info(self, mfn: int) -> int:
        return self._type_info.get(mfn, 0)

    def set_type_info(self, mfn: int, info: int) -> None:
        if self._journal is not None:
            self.journal_set(self._type_info, mfn, info or None)
        elif info:
            self._type_info[mfn] = info
        else:
            self._type_info.pop(mfn, None)

    def tables(self) -> Iterator[tuple[int, int]]:
        """(mfn, level) of every frame typed as a page table."""
        return ((mfn, page_type(info)) for mfn, info in self._type_info.items()
                if is_table(info))

    # -- an L1 entry's references, in place -------------------------------------------
    # Xen's get_page_from_l1e and put_page_from_l1e, one call each, for the L1 update
    # that needs no journal (Validator._update_l1e): never inside a transaction.
    def get_l1_references(self, mfn: int, entry: int, writable: bool) -> None:
        """A general reference on MFN for the L1 entry at ENTRY and, if WRITABLE, a
        writable type reference (MFN is no page table: the caller checked)."""
        assert self._journal is None
        counts = self._count_info
        counts[mfn] = counts.get(mfn, 0) + 1
        if writable:
            types = self._type_info
            types[mfn] = (types.get(mfn) or _WRITABLE) + ONE
            self.add_writable_at(mfn, entry)

    def put_l1_references(self, mfn: int, entry: int, writable: bool) -> None:
        """Drop what get_l1_references took; a writable type at no count is no type."""
        assert self._journal is None
        _drop_one(self._count_info, mfn)
        if writable:
            types = self._type_info
            info = types[mfn] - ONE
            if info == _WRITABLE:
                del types[mfn]
            else:
                types[mfn] = info
            self.drop_writable_at(mfn, entry)

    # -- links between tables ------------------------------------------------------
    def holders(self, mfn: int) -> dict[int, int]:
        """The tables whose entries link table MFN, with how many entries each."""
        return self._holders.get(mfn, {})

    def link(self, mfn: int, holder: int) -> None:
        links = self._holders.get(mfn)
        if links is None:
            links = {}
            self.journal_set(self._holders, mfn, links)
        self.count_up(links, holder)

    def unlink(self, mfn: int, holder: int) -> None:
        links = self._holders[mfn]
        self.count_down(links, holder)
        if not links:
            self.journal_set(self._holders, mfn, None)

    # -- where frames are mapped writable ------------------------------------------
    def writable_at(self, mfn: int) -> tuple[int, ...]:
        """The addresses of the validated entries that map MFN writable."""
        where = self._writable_at.get(mfn, ())
        return (where,) if isinstance(where, int) else tuple(where)

    def add_writable_at(self, mfn: int, entry: int) -> None:
        # One int for the usual single mapping, a set beyond: memory stays small.
        where = self._writable_at.get(mfn)
        if where is None:
            self.journal_set(self._writable_at, mfn, entry)
        elif isinstance(where, int):
            self.journal_set(self._writable_at, mfn, {where, entry})
        else:
            where.add(entry)
            self.journal_undo(where.discard, entry)

    def drop_writable_at(self, mfn: int, entry: int) -> None:
        where = self._writable_at[mfn]
        if isinstance(where, int):
            self.journal_set(self._writable_at, mfn, None)
        else:
            where.discard(entry)
            self.journal_undo(where.add, entry)
            if not where:
                self.journal_set(self._writable_at, mfn, None)

    # -- the journal ---------------------------------------------------------------
    def transaction(self) -> "FrameTable":
        """`with frames.transaction():` undoes every journaled change if the block
        raises. Nested blocks join the outermost."""
        return self

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def __enter__(self) -> None:
        self._depth += 1
        if self._depth == 1:
            self._journal = []

    def __exit__(self, kind, value, traceback) -> bool:
        self._depth -= 1
        if self._depth == 0:
            journal, self._journal = self._journal, None
            if kind is not None:
                for undo, *args in reversed(journal):
                    undo(*args)
        return False

    def journal_set(self, store: dict, key, value) -> None:
        """STORE[KEY] = VALUE (None deletes it), undone if the transaction fails: the
        frame table's own state, and what its users keep beside it."""
        if self._journal is not None:
            self._journal.append((_restore, store, key, store.get(key, _MISSING)))
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value

    def count_up(self, store: dict, key) -> None:
        """STORE[KEY] += 1 (from 0 when absent), undone if the transaction fails."""
        count = store.get(key, 0)
        if self._journal is not None:
            self._journal.append((_restore, store, key, count or _MISSING))
        store[key] = count + 1

    def count_down(self, store: dict, key) -> None:
        """STORE[KEY] -= 1, the key gone at zero, undone if the transaction fails."""
        if self._journal is not None:
            self._journal.append((_restore, store, key, store[key]))
        _drop_one(store, key)

    def journal_undo(self, undo: Callable, *args) -> None:
        """Run UNDO(*ARGS) if the open transaction fails."""
        if self._journal is not None:
            self._journal.append((undo, *args))


def machine_frames(nr_pages: int, domid: int) -> FrameTable:
    """The frame table of a machine running one domain, DOMID: RAM frames
    0 .. NR_PAGES-1 are its own (machine frame = pseudo-physical frame, docs/ABI.md),
    everything from the hypervisor's range up is DOMID_XEN's, and the hypervisor's
    shared_info page is shared with it."""
    frames = FrameTable()
    frames.assign(domid, 0, nr_pages)
    first_xen = layout.BASE >> PAGE_SHIFT
    frames.assign(DOMID_XEN, first_xen, (1 << (32 - PAGE_SHIFT)) - first_xen)
    frames.share(layout.SHARED_INFO >> PAGE_SHIFT, domid)
    return frames
