"""machine/memory.py: guest-virtual access through the guest's own page tables, after
a guest turned paging on; the guest's own loads are the reference."""

import struct

import pytest

from pvtool.interrupts import emulate
from pvtool.machine.memory import GuestMemory, PageFault, UnassignedMemory
from pvtool.x86.paging import PagingMode
from tests.machine.harness import boot_native, run_native
from tests.machine.test_cpu import bare_cpu

# Virtual 0x345000 is an alias of frame 0x346000; 0x347000 is not mapped.
ALIAS_SCENARIO = """
    .include "macros.inc"
    .globl test_main
test_main:
    call paging_on
    movl $0x346003, PAGE_TABLE + (0x345000 >> 12) * 4
    invlpg 0x345000
    UNMAP 0x347000
    movl $0x11223344, 0x346ffc
    REC 0x345ffc                # the guest reads its own value through the alias
    xor %eax, %eax
    ret
"""


@pytest.fixture(scope="module")
def aliased(build):
    run = run_native(build(ALIAS_SCENARIO))
    assert run.records() == [0x11223344]
    return run.machine.memory


def test_without_paging_virtual_is_physical(build):
    memory = boot_native(build("    .globl test_main\ntest_main:\n    ret\n")).machine.memory
    assert memory.paging_mode() is None
    assert memory.virt_to_phys(0x345678) == 0x345678


def test_translation_follows_the_guests_page_table(aliased):
    assert aliased.paging_mode() is PagingMode.TWO_LEVEL
    assert aliased.virt_to_phys(0x345ABC) == 0x346ABC
    assert aliased.virt_to_phys(0x344ABC) == 0x344ABC
    assert aliased.read_virt_u32(0x345FFC) == 0x11223344


def test_a_read_across_a_page_boundary_joins_two_frames(aliased):
    aliased.write_phys(0x344FFE, b"ab")
    aliased.write_phys(0x346000, b"cd")
    assert aliased.read_virt(0x344FFE, 4) == b"abcd"


def test_a_write_across_a_page_boundary_splits_over_two_frames(aliased):
    aliased.write_virt(0x344FFE, b"WXYZ")
    assert aliased.read_phys(0x344FFE, 2) == b"WX"
    assert aliased.read_phys(0x346000, 2) == b"YZ"
    assert aliased.read_phys(0x345000, 2) != b"YZ"  # the frame behind the alias


def test_a_write_reaching_an_unmapped_page_faults_and_writes_nothing(aliased):
    aliased.write_phys(0x346FFE, b"\x00\x00")
    with pytest.raises(PageFault) as fault:
        aliased.write_virt(0x346FFE, b"1234")
    assert fault.value.vaddr == 0x347000
    assert fault.value.error_code == 2  # write, not present, supervisor
    assert aliased.read_phys(0x346FFE, 2) == b"\x00\x00"


def test_a_user_access_to_a_supervisor_page_faults(aliased):
    with pytest.raises(PageFault) as fault:
        aliased.read_virt(0x344000, 4, user=True)
    assert fault.value.error_code == 5  # present, read, user


def test_physical_helpers_are_little_endian_32_bit(aliased):
    aliased.write_u32(0x348000, 0x1_0000_0001)
    assert aliased.read_phys(0x348000, 4) == struct.pack("<I", 1)
    assert aliased.read_u32(0x348000) == 1


def test_physical_memory_past_ram_is_unassigned_for_pvtool_too(aliased):
    with pytest.raises(UnassignedMemory):
        aliased.read_phys((128 << 20) - 2, 4)
    with pytest.raises(UnassignedMemory):
        aliased.write_u32((128 << 20) - 2, 0)


def test_kept_translations_stand_until_their_owner_forgets_them(build):
    """keep_translations is for page tables whose owner sees every change (the PV
    hypervisor): an entry changed behind its back is not seen until forget_translations;
    a fault is never remembered."""
    memory = run_native(build(ALIAS_SCENARIO)).machine.memory
    memory.keep_translations()
    assert memory.virt_to_phys(0x345ABC) == 0x346ABC
    pte = memory.walk(0x345000).pte_addr
    memory.write_u32(pte, 0x345003)  # identity again
    assert memory.virt_to_phys(0x345ABC) == 0x346ABC
    memory.forget_translations()
    assert memory.virt_to_phys(0x345ABC) == 0x345ABC
    for _ in range(2):
        with pytest.raises(PageFault):
            memory.virt_to_phys(0x347000)


def test_forgetting_an_entry_forgets_only_the_translations_through_it(build):
    """forget_translations_through(pte) is what a change of one L1 entry needs: the
    pages it maps are walked again (for reads and writes alike), every other kept
    translation stands (here one whose entry changed too, behind the owner's back)."""
    memory = run_native(build(ALIAS_SCENARIO)).machine.memory
    memory.keep_translations()
    assert memory.virt_to_phys(0x345ABC) == 0x346ABC
    assert memory.virt_to_phys(0x345ABC, write=True) == 0x346ABC
    assert memory.virt_to_phys(0x344ABC) == 0x344ABC
    alias, other = memory.walk(0x345000).pte_addr, memory.walk(0x344000).pte_addr
    memory.write_u32(alias, 0x345003)
    memory.write_u32(other, 0x343003)
    memory.forget_translations_through(alias)
    assert memory.virt_to_phys(0x345ABC) == 0x345ABC
    assert memory.virt_to_phys(0x345ABC, write=True) == 0x345ABC
    assert memory.virt_to_phys(0x344ABC) == 0x344ABC  # kept: its entry was not named
    memory.forget_translations()
    assert memory.virt_to_phys(0x344ABC) == 0x343ABC


def test_memory_the_host_holds_reads_in_place_what_the_guest_stored():
    # mov byte [0x200001], 0x5a; hlt: a store by the guest shows in the view at once.
    cpu = bare_cpu()
    memory = GuestMemory(cpu.uc, cpu)
    memory.map_host(0x200000, 0x2000)
    view = memory.host_view(0x200000, 0x2000)
    assert bytes(view[:4]) == bytes(4)  # zeroed
    cpu.uc.mem_write(0x3000, bytes.fromhex("c60501002000" "5a" "f4"))
    emulate(cpu.uc, 0x3000, 0x3008)
    assert view[1] == 0x5A
    memory.write_phys(0x201FFF, b"\x77")
    assert memory.host_view(0x201FFF, 1)[0] == 0x77 == memory.read_phys(0x201FFF, 1)[0]
    assert view.readonly


def test_a_host_view_is_only_of_memory_the_host_holds():
    cpu = bare_cpu()
    memory = GuestMemory(cpu.uc, cpu)
    memory.map_host(0x200000, 0x1000)
    assert memory.host_view(0x1000, 4) is None  # Unicorn's own RAM
    assert memory.host_view(0x200FFE, 4) is None  # past the end
    assert memory.host_view(0x200FFC, 4) is not None
