"""x86 page tables: entry flags, the three formats and a walker.

Formats (Intel SDM Vol. 3A, ch. 4): 2-level (32-bit, 4-byte entries, 4 MiB pages with
CR4.PSE), PAE (32-bit, 8-byte entries, a 4-entry PDPT, 2 MiB pages) and 4-level
(64-bit, 2 MiB and 1 GiB pages). Levels are numbered as the SDM does from the leaf up:
1 = page table, 2 = page directory, 3 = PDPT, 4 = PML4.

`translate` is what the hardware does on an access, minus the TLB and minus setting
the Accessed/Dirty bits (it only reads; a caller that must set them has the entry's
address in the result). Unicorn gives no guest-virtual access (shared/UNICORN.md), so
the machine and the hypervisor read guest memory through this walker: it is on every
hypercall pointer, hence the precomputed per-mode tables and no objects but the result.
"""

import enum
from collections.abc import Callable, Iterator
from typing import NamedTuple

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT  # the 4 KiB page of every format


def page_up(value: int) -> int:
    """VALUE rounded up to a page boundary."""
    return -(-value // PAGE_SIZE) * PAGE_SIZE


# Entry flags (the same bit positions in every format; PS only in directory entries).
P = 1 << 0  # present
RW = 1 << 1  # writable
US = 1 << 2  # user-accessible
PWT = 1 << 3  # write-through
PCD = 1 << 4  # cache disable
A = 1 << 5  # accessed
D = 1 << 6  # dirty (leaf entries)
PS = 1 << 7  # page size: this directory entry maps a large page
PAT = 1 << 7  # PAT index bit of a 4 KiB page-table entry (PS's position)
G = 1 << 8  # global
PAT_LARGE = 1 << 12  # PAT index bit of a large-page entry
NX = 1 << 63  # no-execute (PAE and 4-level, when EFER.NXE)

# Page-fault error code bits (SDM Vol. 3A, 4.7).
PF_P = 1 << 0  # 0: not present; 1: protection violation
PF_W = 1 << 1  # the access was a write
PF_U = 1 << 2  # the access was made at CPL 3
PF_RSVD = 1 << 3  # a reserved bit was set in an entry
PF_I = 1 << 4  # the access was an instruction fetch (reported when NX is enabled)

ReadPhys = Callable[[int, int], bytes]


class PagingMode(enum.Enum):
    TWO_LEVEL = "2-level"  # CR4.PAE = 0
    PAE = "pae"  # CR4.PAE = 1, not long mode
    FOUR_LEVEL = "4-level"  # long mode


class AddressFault(Exception):
    """A translation that the hardware would refuse. Not a PvtoolError: the hypervisor
    turns it into -EFAULT or a guest exception, never into an exit of pvtool."""


class PageFault(AddressFault):
    """#PF: the walk failed. `error_code` has the hardware's bits (PF_*)."""

    def __init__(self, vaddr: int, error_code: int):
        super().__init__(f"page fault at {vaddr:#x}, error code {error_code:#x}")
        self.vaddr = vaddr
        self.error_code = error_code


class NonCanonicalAddress(AddressFault):
    """A 4-level address whose bits 63:47 are not a sign extension: #GP, not #PF."""

    def __init__(self, vaddr: int):
        super().__init__(f"non-canonical address {vaddr:#x}")
        self.vaddr = vaddr


class Translation(NamedTuple):
    paddr: int
    pte_addr: int  # physical address of the leaf entry
    pte: int  # the leaf entry's value
    level: int  # 1 for a 4 KiB page, 2 for a 4 MiB/2 MiB page, 3 for a 1 GiB page
    writable: bool  # RW on every level (what a CPL-3 write, or a write with WP, needs)
    user: bool  # US on every level
    large_page: bool


class _Level(NamedTuple):
    """One level of a format, as the walker uses it."""

    level: int
    shift: int  # of the virtual-address bits that index this table
    index_mask: int
    large_shift: int  # page size of a PS entry here (0: PS is not allowed)
    next_mask: int  # bits of a non-leaf entry holding the next table's address
    rights: bool  # whether RW/US/NX count here (not in PAE's PDPTEs)
    reserved: int  # bits that must be 0 in a present non-large entry
    large_reserved: int  # bits that must be 0 in a present large entry


class _Format(NamedTuple):
    entry_size: int
    cr3_mask: int
    levels: tuple[_Level, ...]  # from the top down


_ADDR_52 = 0x000F_FFFF_FFFF_F000
_PAE_HIGH = 0x7FF0_0000_0000_0000  # PAE bits 62:52 are reserved, not ignored
_FORMATS = {
    PagingMode.TWO_LEVEL: _Format(4, 0xFFFF_F000, (
        _Level(2, 22, 0x3FF, 22, 0xFFFF_F000, True, 0, 1 << 21),
        _Level(1, 12, 0x3FF, 0, 0xFFFF_F000, True, 0, 0),
    )),
    PagingMode.PAE: _Format(8, 0xFFFF_FFE0, (
        _Level(3, 30, 0x3, 0, _ADDR_52, False, 0xFFF0_0000_0000_01E6, 0),
        _Level(2, 21, 0x1FF, 21, _ADDR_52, True, _PAE_HIGH, _PAE_HIGH | 0x1F_E000),
        _Level(1, 12, 0x1FF, 0, _ADDR_52, True, _PAE_HIGH, 0),
    )),
    PagingMode.FOUR_LEVEL: _Format(8, _ADDR_52, (
        _Level(4, 39, 0x1FF, 0, _ADDR_52, True, PS, 0),
        _Level(3, 30, 0x1FF, 30, _ADDR_52, True, 0, 0x3FFF_E000),
        _Level(2, 21, 0x1FF, 21, _ADDR_52, True, 0, 0x1F_E000),
        _Level(1, 12, 0x1FF, 0, _ADDR_52, True, 0, 0),
    )),
}  # fmt: skip


def translate(
    read_phys: ReadPhys,
    cr3: int,
    vaddr: int,
    *,
    mode: PagingMode,
    write: bool = False,
    user: bool = False,
    wp: bool = True,
    fetch: bool = False,
    nxe: bool = True,
    pse: bool = True,
) -> Translation:
    """Walk the tables at `cr3` for an access to `vaddr`, or raise PageFault.

    `user` is a CPL-3 access, `wp` is CR0.WP (supervisor writes honour RW), `fetch` an
    instruction fetch, `nxe` is EFER.NXE (without it bit 63 is reserved), `pse` is
    CR4.PSE (without it PS is ignored in 2-level tables).
    """
    fmt = _FORMATS[mode]
    vaddr = _linear(vaddr, mode)
    access = (PF_W if write else 0) | (PF_U if user else 0) | (PF_I if fetch and nxe else 0)
    table, writable, user_ok, no_exec = cr3 & fmt.cr3_mask, True, True, False
    for lvl in fmt.levels:
        pte_addr = table + ((vaddr >> lvl.shift) & lvl.index_mask) * fmt.entry_size
        pte = int.from_bytes(read_phys(pte_addr, fmt.entry_size), "little")
        if not pte & P:
            raise PageFault(vaddr, access)
        large = lvl.large_shift and pte & PS and (pse or mode is not PagingMode.TWO_LEVEL)
        reserved = lvl.large_reserved if large else lvl.reserved
        if not nxe and fmt.entry_size == 8:
            reserved |= NX
        if pte & reserved:
            raise PageFault(vaddr, access | PF_P | PF_RSVD)
        if lvl.rights:
            writable = writable and bool(pte & RW)
            user_ok = user_ok and bool(pte & US)
            no_exec = no_exec or (nxe and bool(pte & NX))
        if large or lvl.level == 1:
            return _finish(vaddr, pte_addr, pte, lvl, large, (writable, user_ok, no_exec),
                           (write, user, wp, fetch), access)  # fmt: skip
        table = pte & lvl.next_mask
    raise AssertionError("unreachable: level 1 always ends the walk")


# 4-level paging's 48-bit addresses are canonical when bits 63-47 are all equal: the
# lower half ends here, and the upper half is the last CANONICAL_LOW_END bytes.
CANONICAL_LOW_END = 1 << 47


def is_canonical(address: int) -> bool:
    """Whether a 64-bit address is canonical (bits 63-47 all equal)."""
    return address < CANONICAL_LOW_END or (1 << 64) - CANONICAL_LOW_END <= address < 1 << 64


def _linear(vaddr: int, mode: PagingMode) -> int:
    if mode is not PagingMode.FOUR_LEVEL:
        return vaddr & 0xFFFF_FFFF
    vaddr &= 0xFFFF_FFFF_FFFF_FFFF
    if not is_canonical(vaddr):
        raise NonCanonicalAddress(vaddr)
    return vaddr


def _finish(vaddr, pte_addr, pte, lvl, large, rights, request, access) -> Translation:
    writable, user_ok, no_exec = rights
    write, user, wp, fetch = request
    if (user and not user_ok) or (write and not writable and (user or wp)) or (fetch and no_exec):
        raise PageFault(vaddr, access | PF_P)
    page_shift = lvl.large_shift if large else 12
    frame = _large_frame(pte, lvl) if large else pte & lvl.next_mask
    paddr = frame | (vaddr & ((1 << page_shift) - 1))
    return Translation(paddr, pte_addr, pte, lvl.level, writable, user_ok, bool(large))


def _large_frame(pte: int, lvl: _Level) -> int:
    if lvl.next_mask == 0xFFFF_F000:  # 2-level 4 MiB page, PSE-36: bits 20:13 = PA 39:32
        return (pte & 0xFFC0_0000) | (((pte >> 13) & 0xFF) << 32)
    return pte & _ADDR_52 & ~((1 << lvl.large_shift) - 1)


def entry_frame(entry: int, mode: PagingMode, level: int) -> int:
    """The physical address an entry points to: the next table, or the page it maps."""
    lvl = _level(mode, level)
    large = lvl.large_shift and entry & PS
    return _large_frame(entry, lvl) if large else entry & lvl.next_mask


def is_large(entry: int, mode: PagingMode, level: int) -> bool:
    """Whether a present entry at `level` maps a large page (PS where PS is allowed)."""
    return bool(_level(mode, level).large_shift and entry & PS)


def index(vaddr: int, mode: PagingMode, level: int) -> int:
    """The index of `vaddr`'s entry in its table at `level`."""
    lvl = _level(mode, level)
    return (vaddr >> lvl.shift) & lvl.index_mask


def entry_count(mode: PagingMode, level: int) -> int:
    """Entries in a table at `level` (4 for PAE's PDPT, else a page's worth)."""
    return _level(mode, level).index_mask + 1


def levels(mode: PagingMode) -> int:
    """Number of levels: 2, 3 or 4."""
    return len(_FORMATS[mode].levels)


def entry_size(mode: PagingMode) -> int:
    return _FORMATS[mode].entry_size


def address_mask(mode: PagingMode, level: int) -> int:
    """The bits of an entry at `level` that hold the next table's (or 4 KiB page's)
    physical address."""
    return _level(mode, level).next_mask


def reserved_bits(mode: PagingMode, level: int, *, nxe: bool = True) -> int:
    """The bits a present entry at `level` that maps a table or a 4 KiB page must
    leave clear; without EFER.NXE (`nxe` False) bit 63 of an 8-byte entry too."""
    no_nx = not nxe and _FORMATS[mode].entry_size == 8
    return _level(mode, level).reserved | (NX if no_nx else 0)


def entries(
    read_phys: ReadPhys, table_paddr: int, mode: PagingMode, level: int
) -> Iterator[tuple[int, int]]:
    """(index, entry) for every entry of the table at `table_paddr`, present or not."""
    size = _FORMATS[mode].entry_size
    count = entry_count(mode, level)
    data = read_phys(table_paddr, size * count)
    for i in range(count):
        yield i, int.from_bytes(data[i * size : (i + 1) * size], "little")


def _level(mode: PagingMode, level: int) -> _Level:
    for lvl in _FORMATS[mode].levels:
        if lvl.level == level:
            return lvl
    raise ValueError(f"{mode.value} paging has no level {level}")
