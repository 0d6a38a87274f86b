"""4 MiB pages (hv/superpages.py): split into L1s the hypervisor owns, for kernels that
opt in (trap mode, patched kernels), refused to Xen guests (tests/hv/test_mmu.py).

The scenario kernels turn on paging the way small kernels do (CR4.PSE, a page
directory of 4 MiB entries covering itself, writable) and must print under trap mode
exactly what they print on the bare PC; the rules are checked on a trap-mode domain
whose page tables are written here and handed to the hypervisor directly.
"""

import struct

import pytest

from pvtool.hv.errors import HypercallError
from pvtool.hv.frames import VALIDATED, PageType, page_type
from pvtool.hv.trapmode import boot_trap_domain
from pvtool.image.elf import load_elf
from pvtool.machine.pc import Machine
from pvtool.machine.stop import StopKind
from pvtool.run import Mode, RunOptions, run_image
from tests.guests_asm.build import GuestBuilder

PAGE = 4096
P, RW, PS = 0x1, 0x2, 0x80
BIG = P | RW | PS  # a writable 4 MiB entry
RAM = 128 << 20

# The CPU test kernels' shape: PSE on, the first 8 MiB identity-mapped with 4 MiB pages
# (the directory itself inside them, writable) and the first 4 MiB again at 2 GiB;
# then a store through the alias, a 4 MiB entry replaced and one added by plain stores
# into the live directory (each followed by invlpg), and a 4 KiB table linked at run
# time under a slot of its own.
PSE_KERNEL = f"""
    .globl test_main
test_main:
    mov %cr4, %eax
    or $0x10, %eax
    mov %eax, %cr4
    mov $PAGE_DIR, %edi
    xor %eax, %eax
    mov $1024, %ecx
    rep stosl
    movl ${BIG:#x}, PAGE_DIR + 4 * 0
    movl ${0x400000 | BIG:#x}, PAGE_DIR + 4 * 1
    movl ${BIG:#x}, PAGE_DIR + 4 * 0x200
    mov $PAGE_DIR, %eax
    mov %eax, %cr3
    mov %cr0, %eax
    or $0x80010000, %eax
    mov %eax, %cr0
    movl $0x5AFE0001, 0x80200000
    REC 0x200000
    movl $0x5AFE0002, 0x401000
    movl ${0x400000 | BIG:#x}, PAGE_DIR + 4 * 0x200
    invlpg 0x80001000
    REC 0x80001000
    movl ${0x800000 | BIG:#x}, PAGE_DIR + 4 * 3
    invlpg 0xC00000
    movl $0x5AFE0003, 0xC00000
    REC 0xC00000
    movl $0x5AFE0004, 0x7000
    movl $0x7003, PAGE_TABLE
    movl $PAGE_TABLE + 3, PAGE_DIR + 4 * 5
    REC 0x1400000
    xor %eax, %eax
    ret
"""


def run(elf, mode: Mode):
    out = bytearray()
    result = run_image(elf, RunOptions(mode=mode, max_insns=5_000_000), out.extend)
    return result, bytes(out)


def test_a_kernel_on_4mib_pages_prints_under_trap_mode_what_it_prints_natively(tmp_path):
    """The regression of the CPU test kernels: `mov cr0` enabling paging over a PSE
    page directory crashed trap mode with "superpages are not supported"."""
    elf = GuestBuilder(tmp_path).build('.include "macros.inc"\n' + PSE_KERNEL).elf
    native, native_out = run(elf, Mode.NATIVE)
    trap, trap_out = run(elf, Mode.TRAP)
    assert native.stop.kind is StopKind.GUEST_EXIT and native.stop.code == 0
    assert native_out == b"5afe0001\n5afe0002\n5afe0003\n5afe0004\n"
    assert (trap.stop.kind, trap.stop.code) == (native.stop.kind, native.stop.code), \
        trap.stop.describe()
    assert trap_out == native_out
    assert trap.exits["ptwr"] >= 3  # the stores into the live directory


# ---- the rules, on a trap-mode domain ---------------------------------------------

DIR, TABLE, OTHER = 0x200, 0x201, 0x202  # frames of the tables written here (2 MiB)


@pytest.fixture
def domain(tmp_path):
    elf = GuestBuilder(tmp_path).build(".globl test_main\ntest_main:\n    ret\n").elf
    machine = Machine(ram_size=RAM, output=lambda data: None)
    return boot_trap_domain(machine, load_elf(elf)).domain


def write_table(domain, mfn: int, entries: dict[int, int]) -> None:
    table = [0] * 1024
    for index, entry in entries.items():
        table[index] = entry
    domain.memory.write_phys(mfn * PAGE, struct.pack("<1024I", *table))


def entry(domain, mfn: int, index: int) -> int:
    return struct.unpack("<I", domain.memory.read_phys(mfn * PAGE + 4 * index, 4))[0]


def split_of(domain, mfn: int, index: int) -> int:
    return entry(domain, mfn, index) >> 12


def test_a_writable_4mib_page_becomes_an_l1_of_the_hypervisors(domain):
    write_table(domain, DIR, {0: BIG, 2: 0x800000 | P | PS})
    domain.pagetables.new_baseptr(DIR)
    split = split_of(domain, DIR, 0)
    assert split * PAGE >= 0xFC000000  # the hypervisor's frame, not the guest's
    assert page_type(domain.frames.type_info(split)) == PageType.L1
    assert domain.frames.type_info(split) & VALIDATED
    assert entry(domain, split, 7) == 7 * PAGE | P | RW
    # The directory inside its own writable 4 MiB page is mapped read-only.
    assert entry(domain, split, DIR) == DIR * PAGE | P
    read_only = split_of(domain, DIR, 2)
    assert entry(domain, read_only, 3) == 0x803000 | P
    # What the hypervisor reads for the guest is the guest's own entry.
    assert domain.pagetables.read_entry(DIR * PAGE) == BIG
    assert domain.pagetables.read_entry(DIR * PAGE + 8) == 0x800000 | P | PS
    # The CPU walks the split table.
    assert domain.memory.walk(0x7000).paddr == 0x7000


def test_identical_4mib_entries_share_one_split_table(domain):
    write_table(domain, DIR, {0: BIG, 0x200: BIG})
    domain.pagetables.new_baseptr(DIR)
    assert split_of(domain, DIR, 0) == split_of(domain, DIR, 0x200)
    assert domain.frames.holders(split_of(domain, DIR, 0)) == {DIR: 2}


def test_a_4mib_page_of_frames_outside_the_domain_is_refused(domain):
    write_table(domain, DIR, {0: BIG, 5: RAM | BIG})
    with pytest.raises(HypercallError, match="maps the 4 MiB page at 0x8000000: .*which "
                       "the domain does not own"):
        domain.pagetables.new_baseptr(DIR)


def test_a_4mib_page_over_the_hypervisor_is_refused(domain):
    write_table(domain, DIR, {0: BIG, 5: 0xFC000000 | BIG})
    with pytest.raises(HypercallError, match="not the domain's|does not own"):
        domain.pagetables.new_baseptr(DIR)


def test_a_writable_4mib_page_over_a_pinned_page_table_is_refused_to_a_pin(domain):
    """An explicit request gets Xen's refusal, never a downgrade: the 4 MiB page at
    0 covers the pinned L1 at frame TABLE."""
    write_table(domain, TABLE, {0: 0x9000 | P})
    domain.pagetables.pin(TABLE, 1)
    write_table(domain, OTHER, {0: BIG})
    with pytest.raises(HypercallError, match="is a page table: no writable mapping"):
        domain.pagetables.pin(OTHER, 2)
    assert not domain.frames.type_info(OTHER) & VALIDATED
    write_table(domain, OTHER, {0: P | PS})  # read-only: accepted
    domain.pagetables.pin(OTHER, 2)


def test_a_4mib_page_above_4gib_is_refused(domain):
    write_table(domain, DIR, {0: BIG, 5: 1 << 13 | BIG})  # PSE-36: physical 4 GiB
    with pytest.raises(HypercallError, match="a 4 MiB page above 4 GiB"):
        domain.pagetables.new_baseptr(DIR)


def test_update_va_mapping_cannot_reach_into_a_split_table(domain):
    write_table(domain, DIR, {0: BIG})
    domain.pagetables.new_baseptr(DIR)
    with pytest.raises(HypercallError, match="is in a 4 MiB page"):
        domain.pagetables.update_va_mapping(0x3000, 0x9000 | P | RW)


def test_a_directory_no_longer_in_use_gets_its_write_access_back_through_the_split(domain):
    """The kernel leaves its boot directory for another; a store into the old one
    through the shared 4 MiB page faults (it was made read-only) and gets write access
    back (docs/ABI.md), while the new directory in the same 4 MiB stays read-only."""
    write_table(domain, DIR, {0: BIG})
    write_table(domain, OTHER, {0: BIG})
    tables = domain.pagetables
    tables.new_baseptr(DIR)
    tables.new_baseptr(OTHER)
    split = split_of(domain, OTHER, 0)
    assert entry(domain, split, OTHER) == OTHER * PAGE | P
    assert tables.give_back_write_access(split * PAGE + 4 * DIR)
    assert entry(domain, split, DIR) == DIR * PAGE | P | RW
    assert tables.in_use(OTHER)  # a store into it is emulated (ptwr), never let through
    assert entry(domain, split, OTHER) == OTHER * PAGE | P
