"""The page walker against hand-built tables in a bytearray, for all three formats."""

import pytest

from pvtool.x86.paging import (
    NX,
    PF_I,
    PF_P,
    PF_RSVD,
    PF_U,
    PF_W,
    PS,
    RW,
    US,
    NonCanonicalAddress,
    P,
    PageFault,
    PagingMode,
    Translation,
    address_mask,
    entries,
    entry_count,
    entry_frame,
    index,
    is_large,
    levels,
    reserved_bits,
    translate,
)

TWO, PAE, FOUR = PagingMode.TWO_LEVEL, PagingMode.PAE, PagingMode.FOUR_LEVEL


class Memory:
    """Physical memory for the walker: a bytearray with entry writers."""

    def __init__(self, size: int = 0x40000):
        self.data = bytearray(size)

    def read(self, address: int, size: int) -> bytes:
        return bytes(self.data[address : address + size])

    def put(self, address: int, value: int, size: int) -> None:
        self.data[address : address + size] = value.to_bytes(size, "little")


def fault(mem, cr3, vaddr, **kwargs) -> int:
    with pytest.raises(PageFault) as caught:
        translate(mem.read, cr3, vaddr, **kwargs)
    assert caught.value.vaddr == vaddr
    return caught.value.error_code


# ---- 2-level: PD at 0x1000, PT at 0x2000


@pytest.fixture
def two_level():
    mem = Memory()
    put = lambda addr, value: mem.put(addr, value, 4)  # noqa: E731
    put(0x1000 + 1 * 4, 0x2000 | P | RW | US)  # PDE 1: 0x00400000-0x007FFFFF
    put(0x2000 + 0 * 4, 0x5000 | P | RW | US)  # 0x00400000: user, writable
    put(0x2000 + 1 * 4, 0x6000 | P | US)  # 0x00401000: user, read-only
    put(0x2000 + 2 * 4, 0x7000 | P | RW)  # 0x00402000: supervisor
    put(0x2000 + 3 * 4, 0x8000 | RW | US)  # 0x00403000: not present
    put(0x1000 + 2 * 4, 0x00C0_0000 | P | RW | PS)  # PDE 2: a 4 MiB page
    put(0x1000 + 3 * 4, 0x3000 | P | US)  # PDE 3: read-only table, user-writable PTEs
    put(0x3000, 0x9000 | P | RW | US)
    put(0x1000 + 4 * 4, 0x0140_0000 | P | PS | (0x3 << 13))  # PSE-36: bits 33:32 = 3
    put(0x1000 + 5 * 4, 0x0180_0000 | P | PS | (1 << 21))  # reserved bit 21
    return mem


def test_two_level_translates_a_4k_page(two_level):
    t = translate(two_level.read, 0x1000, 0x0040_0123, mode=TWO)
    assert t == Translation(0x5123, 0x2000, 0x5000 | P | RW | US, 1, True, True, False)


def test_two_level_fault_error_codes(two_level):
    read = dict(mode=TWO)
    assert fault(two_level, 0x1000, 0x0040_3000, **read) == 0  # not present, read
    assert fault(two_level, 0x1000, 0x0040_3000, mode=TWO, write=True) == PF_W
    assert fault(two_level, 0x1000, 0x0040_3000, mode=TWO, user=True) == PF_U
    assert fault(two_level, 0x1000, 0x0000_0000, mode=TWO, write=True, user=True) == PF_W | PF_U
    # a write to a read-only page: supervisor with CR0.WP, and user
    assert fault(two_level, 0x1000, 0x0040_1000, mode=TWO, write=True) == PF_P | PF_W
    assert fault(two_level, 0x1000, 0x0040_1000, mode=TWO, write=True, user=True) == 7
    # a user access to a supervisor page
    assert fault(two_level, 0x1000, 0x0040_2000, mode=TWO, user=True) == PF_P | PF_U


def test_two_level_supervisor_write_to_read_only_page_without_wp(two_level):
    t = translate(two_level.read, 0x1000, 0x0040_1008, mode=TWO, write=True, wp=False)
    assert t.paddr == 0x6008 and not t.writable


def test_two_level_rights_combine_across_levels(two_level):
    """RW=0 in the PDE makes the PTE's RW=1 useless (SDM 4.6)."""
    t = translate(two_level.read, 0x1000, 0x00C0_0010, mode=TWO, user=True)
    assert t.paddr == 0x9010 and t.user and not t.writable
    assert fault(two_level, 0x1000, 0x00C0_0010, mode=TWO, user=True, write=True) == 7


def test_two_level_4mib_page_with_pse(two_level):
    t = translate(two_level.read, 0x1000, 0x0089_ABCD, mode=TWO)
    assert (t.paddr, t.level, t.large_page, t.pte_addr) == (0x00C9_ABCD, 2, True, 0x1008)
    assert not t.user


def test_two_level_pse36_high_address_bits(two_level):
    assert translate(two_level.read, 0x1000, 0x0100_0004, mode=TWO).paddr == 0x3_0140_0004


def test_two_level_reserved_bit_in_a_4mib_entry(two_level):
    assert fault(two_level, 0x1000, 0x0140_0000, mode=TWO, write=True) == PF_P | PF_W | PF_RSVD


def test_two_level_without_pse_a_ps_entry_points_to_a_table(two_level):
    mem = Memory(0x0100_0000)  # PDE 2's "large page" at 0x00C00000 is read as a table
    mem.data[: len(two_level.data)] = two_level.data
    mem.put(0x00C0_0000 + index(0x0089_ABCD, TWO, 1) * 4, 0xA000 | P, 4)
    t = translate(mem.read, 0x1000, 0x0089_ABCD, mode=TWO, pse=False)
    assert (t.paddr, t.level, t.large_page) == (0xABCD, 1, False)


def test_cr3_low_bits_are_not_part_of_the_table_address(two_level):
    assert translate(two_level.read, 0x1000 | 0x18, 0x0040_0000, mode=TWO).paddr == 0x5000


# ---- PAE: PDPT at 0x1020 (32-byte aligned), PD at 0x2000, PT at 0x3000


@pytest.fixture
def pae():
    mem = Memory()
    put = lambda addr, value: mem.put(addr, value, 8)  # noqa: E731
    put(0x1020 + 0 * 8, 0x2000 | P)  # PDPTE 0 (no RW/US in a PDPTE)
    put(0x1020 + 3 * 8, 0x4000 | P)  # PDPTE 3: 0xC0000000-
    put(0x1020 + 1 * 8, 0x5000 | P | RW)  # RW is reserved in a PAE PDPTE
    put(0x2000 + 2 * 8, 0x3000 | P | RW | US)  # PDE 2: 0x00400000
    put(0x3000 + 1 * 8, 0x12_3456_7000 | P | RW | US)  # 0x00401000 above 4 GiB
    put(0x3000 + 2 * 8, 0x8000 | P | RW | NX)  # 0x00402000: no-execute
    put(0x4000 + 0 * 8, 0x0060_0000 | P | RW | PS)  # PDE 0 of 0xC0000000: a 2 MiB page
    put(0x4000 + 1 * 8, 0x0080_0000 | P | RW | PS | (1 << 13))  # reserved bit 13
    put(0x3000 + 3 * 8, 0x9000 | P | (1 << 55))  # bits 62:52 are reserved in PAE
    return mem


def test_pae_translates_above_4gib(pae):
    t = translate(pae.read, 0x1020, 0x0040_1ABC, mode=PAE, write=True, user=True)
    assert t == Translation(0x12_3456_7ABC, 0x3008, 0x12_3456_7000 | P | RW | US, 1, True,
                            True, False)  # fmt: skip


def test_pae_2mib_page(pae):
    t = translate(pae.read, 0x1020, 0xC001_2345, mode=PAE)
    assert (t.paddr, t.level, t.large_page) == (0x0061_2345, 2, True)


def test_pae_no_execute(pae):
    assert translate(pae.read, 0x1020, 0x0040_2000, mode=PAE).paddr == 0x8000
    assert fault(pae, 0x1020, 0x0040_2000, mode=PAE, fetch=True) == PF_P | PF_I
    # without EFER.NXE bit 63 is reserved
    assert fault(pae, 0x1020, 0x0040_2000, mode=PAE, nxe=False) == PF_P | PF_RSVD


def test_pae_reserved_bits(pae):
    assert fault(pae, 0x1020, 0x4000_0000, mode=PAE) == PF_P | PF_RSVD  # RW in a PDPTE
    assert fault(pae, 0x1020, 0xC020_0000, mode=PAE) == PF_P | PF_RSVD  # large-page bit 13
    assert fault(pae, 0x1020, 0x0040_3000, mode=PAE) == PF_P | PF_RSVD  # bit 55


def test_pae_not_present_pdpte(pae):
    assert fault(pae, 0x1020, 0x8000_0000, mode=PAE, write=True) == PF_W


# ---- 4-level: PML4 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000


@pytest.fixture
def four():
    mem = Memory()
    put = lambda addr, value: mem.put(addr, value, 8)  # noqa: E731
    full = P | RW | US
    put(0x1000 + 0 * 8, 0x2000 | full)
    put(0x1000 + 256 * 8, 0x6000 | P | RW)  # the kernel half: supervisor
    put(0x1000 + 1 * 8, 0x2000 | full | PS)  # PS is reserved in a PML4E
    put(0x2000 + 0 * 8, 0x3000 | full)
    put(0x2000 + 1 * 8, 0x4000_0000 | full | PS)  # a 1 GiB page at 1 GiB
    put(0x3000 + 0 * 8, 0x4000 | full)
    put(0x3000 + 1 * 8, 0x0020_0000 | P | US | PS)  # a read-only 2 MiB page at 2 MiB
    put(0x4000 + 5 * 8, 0xA000 | full)
    put(0x6000 + 0 * 8, 0x7000 | P | RW)
    put(0x7000 + 0 * 8, 0x0080_0000 | P | RW | PS)
    return mem


def test_four_level_pages_of_every_size(four):
    assert translate(four.read, 0x1000, 0x5123, mode=FOUR).paddr == 0xA123
    two_m = translate(four.read, 0x1000, 0x0021_0000, mode=FOUR, user=True)
    assert (two_m.paddr, two_m.level, two_m.large_page, two_m.writable) == (
        0x0021_0000, 2, True, False)  # fmt: skip
    one_g = translate(four.read, 0x1000, 0x4123_4567, mode=FOUR)
    assert (one_g.paddr, one_g.level, one_g.pte_addr) == (0x4123_4567, 3, 0x2008)


def test_four_level_high_half(four):
    t = translate(four.read, 0x1000, 0xFFFF_8000_0001_2345, mode=FOUR)
    assert t.paddr == 0x0081_2345 and not t.user
    assert fault(four, 0x1000, 0xFFFF_8000_0001_2345, mode=FOUR, user=True) == PF_P | PF_U


def test_four_level_errors(four):
    assert fault(four, 0x1000, 0x0021_0000, mode=FOUR, write=True) == PF_P | PF_W
    assert fault(four, 0x1000, 0x6000, mode=FOUR, user=True) == PF_U
    assert fault(four, 0x1000, 0x80_0000_0000, mode=FOUR) == PF_P | PF_RSVD


def test_four_level_non_canonical_address_is_not_a_page_fault(four):
    with pytest.raises(NonCanonicalAddress):
        translate(four.read, 0x1000, 0x0000_8000_0000_0000, mode=FOUR)


# ---- table helpers


def test_entries_iterates_every_entry(two_level, pae):
    pd = list(entries(two_level.read, 0x1000, TWO, 2))
    assert len(pd) == 1024 and pd[1] == (1, 0x2000 | P | RW | US) and pd[0] == (0, 0)
    pdpt = list(entries(pae.read, 0x1020, PAE, 3))
    assert [value & ~0xFFF for _, value in pdpt] == [0x2000, 0x5000, 0, 0x4000]
    assert entry_count(FOUR, 4) == 512 and levels(PAE) == 3


def test_entry_helpers():
    assert entry_frame(0x0140_0000 | P | PS | (0x3 << 13), TWO, 2) == 0x3_0140_0000
    assert entry_frame(0x2000 | P | PS, TWO, 1) == 0x2000  # PS in a PTE is PAT
    assert is_large(0x0020_0000 | P | PS, FOUR, 2) and not is_large(P | PS, FOUR, 4)
    assert index(0xC001_2345, PAE, 3) == 3 and index(0x0040_1000, TWO, 1) == 1
    with pytest.raises(ValueError, match="level 4"):
        index(0, TWO, 4)


def test_address_masks_and_reserved_bits_per_level():
    """SDM Vol. 3A, 4.3-4.5: 20 address bits in 2-level entries, up to bit 51 in PAE
    ones; a PDPTE's bits 1-2 and 5-8 are reserved, bit 63 of a PAE entry without NXE."""
    assert address_mask(TWO, 1) == 0xFFFF_F000 and reserved_bits(TWO, 2) == 0
    assert address_mask(PAE, 2) == 0x000F_FFFF_FFFF_F000
    assert reserved_bits(PAE, 3) & 0xFFF == 0x1E6
    assert reserved_bits(PAE, 1) == 0x7FF0_0000_0000_0000
    assert reserved_bits(PAE, 1, nxe=False) == 0xFFF0_0000_0000_0000
    assert reserved_bits(TWO, 1, nxe=False) == 0  # 4-byte entries have no bit 63
