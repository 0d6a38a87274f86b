"""machine/memory.py: guest-virtual access through the guest's own page tables, after
a guest turned paging on (the guest's own loads are the reference), and the RAM read
in place (uc_mem_read's bytes are the reference)."""

import ctypes
import os
import random
import re
import struct
from pathlib import Path

import pytest

from pvtool.interrupts import UNTIL_NEVER, emulate
from pvtool.machine import memory as memory_module
from pvtool.machine.cpu import EAX
from pvtool.machine.lapic import APIC_BASE
from pvtool.machine.memory import PAGE_SIZE, GuestMemory, PageFault, UnassignedMemory
from pvtool.machine.pc import MAX_RAM, Machine
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


def test_a_read_within_a_page_uses_the_kept_translation_as_virt_to_phys_does(build):
    """read_virt takes a kept translation inline (every hypercall's argument): it reads
    where virt_to_phys points, a stale translation included until its owner forgets
    it, and a user read is never served by the kernel's."""
    memory = run_native(build(ALIAS_SCENARIO)).machine.memory
    memory.keep_translations()
    assert memory.read_virt_u32(0x345FFC) == 0x11223344
    memory.write_u32(memory.walk(0x345000).pte_addr, 0x345003)  # behind the owner's back
    memory.write_u32(0x345FFC, 0x55667788)
    assert memory.read_virt_u32(0x345FFC) == 0x11223344
    with pytest.raises(PageFault):
        memory.read_virt(0x345FFC, 4, user=True)  # a supervisor page
    memory.forget_translations()
    assert memory.read_virt_u32(0x345FFC) == 0x55667788


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


# -- RAM read in place ----------------------------------------------------------------
RAM = 16 << 20


@pytest.fixture
def machine() -> Machine:
    """A PC with 16 MiB of RAM and nothing booted: its CPU starts in flat protected mode
    at ring 0, as Unicorn starts a 32-bit CPU."""
    return Machine(ram_size=RAM, output=lambda _: None)


def unicorns(machine: Machine, address: int, size: int) -> bytes:
    return bytes(machine.uc.mem_read(address, size))


def test_ram_read_in_place_is_what_unicorn_reads_anywhere_in_ram(machine):
    """Reads of every size the hypervisor makes (an entry, a hypercall argument, a
    page, a ring), page-crossing or not, anywhere from the first byte to the last,
    equal uc_mem_read's, after the hypervisor wrote random bytes through Unicorn."""
    rng = random.Random(1)
    window = 0x240000  # written whole, so that reads there see varied bytes
    machine.memory.write_phys(window, rng.randbytes(0x20000))
    for page in rng.sample(range(RAM // PAGE_SIZE), 48):
        machine.memory.write_phys(page * PAGE_SIZE, rng.randbytes(PAGE_SIZE))
    sizes = (1, 2, 4, 8, 12, 100, PAGE_SIZE, PAGE_SIZE + 7, 3 * PAGE_SIZE)
    for _ in range(3000):
        size = rng.choice(sizes)
        base = window if rng.random() < 0.5 else 0
        address = rng.randrange(base, (base + 0x20000 if base else RAM) - size + 1)
        assert machine.memory.read_phys(address, size) == unicorns(machine, address, size)
        if size == 4:
            assert machine.memory.read_u32(address) == int.from_bytes(
                unicorns(machine, address, 4), "little")
    for address, size in ((window + PAGE_SIZE - 2, 4), (window + PAGE_SIZE - 1, 2),
                          (0, 1), (RAM - 1, 1), (RAM - 4, 4), (RAM - PAGE_SIZE - 3, 9)):
        assert machine.memory.read_phys(address, size) == unicorns(machine, address, size)
    assert machine.memory.read_phys(window, 0) == b""


def test_a_read_of_ram_makes_no_call_into_unicorn(machine, monkeypatch):
    machine.memory.write_phys(0x1234, b"in place")
    monkeypatch.setattr(memory_module, "_mem_read", None)  # a call would raise TypeError
    assert machine.memory.read_phys(0x1234, 8) == b"in place"
    assert machine.memory.read_u32(0x1234) == int.from_bytes(b"in p", "little")


def test_ram_read_in_place_sees_the_guests_stores_at_once(machine):
    """The guest's own stores (a `rep stosd` over three pages, a dword across a page
    boundary) are in RAM when emulation returns: read in place, they are what
    uc_mem_read gives and what the code stored."""
    code = 0x1000
    machine.memory.write_phys(code, bytes.fromhex(
        "bf00003000"  # mov edi, 0x300000
        "b9000c0000"  # mov ecx, 0xc00 (3 pages of dwords)
        "b8efbeadde"  # mov eax, 0xdeadbeef
        "f3ab"  # rep stosd
        "b844332211"  # mov eax, 0x11223344
        "a3fe0f4000"))  # mov [0x400ffe], eax
    emulate(machine.uc, code, code + 27)
    assert machine.memory.read_phys(0x300000, 3 * PAGE_SIZE) == \
        bytes.fromhex("efbeadde") * 0xC00 == unicorns(machine, 0x300000, 3 * PAGE_SIZE)
    assert machine.memory.read_phys(0x400FFE, 4) == bytes.fromhex("44332211")
    assert machine.memory.read_u32(0x400FFE) == 0x11223344
    assert machine.memory.read_phys(0x303000, 4) == bytes(4)  # past the last store


def test_a_write_over_translated_code_runs_new_at_once(machine):
    """write_phys over code the CPU already translated (a device's DMA, a hypercall's
    copy) has QEMU drop those blocks, as its own DMA does: the next slice runs the
    new code, with no flush of the whole translation cache."""
    code = 0x2000
    machine.memory.write_phys(code, bytes.fromhex("b801000000" "90"))  # mov eax, 1
    emulate(machine.uc, code, UNTIL_NEVER, 2)  # slices as the run loop's: counted
    assert machine.cpu.read(EAX) == 1
    machine.memory.write_phys(code + 1, (2).to_bytes(4, "little"))
    assert machine.memory.read_phys(code, 6) == bytes.fromhex("b802000000" "90")
    emulate(machine.uc, code, UNTIL_NEVER, 2)
    assert machine.cpu.read(EAX) == 2


def test_a_write_leaves_the_blocks_of_other_pages_translated(machine, monkeypatch):
    """Only the written range's blocks go: a block on another page is found again in
    the translation cache (Unicorn's ctl_request_cache would translate it anew)."""
    machine.memory.write_phys(0x2000, bytes.fromhex("b801000000" "90"))
    emulate(machine.uc, 0x2000, UNTIL_NEVER, 2)
    dropped = []
    invalidate = machine.memory._invalidate_code
    monkeypatch.setattr(machine.memory, "_invalidate_code",
                        lambda start, end: (dropped.append((start, end)), invalidate(start, end)))
    machine.memory.write_phys(0x5000, b"data")
    offset = machine.cpu.qemu.ram_offset(ctypes.addressof(ctypes.c_char.from_buffer(
        machine.memory._ram)))
    assert dropped == [(offset + 0x5000, offset + 0x5004)]


def test_a_write_into_ram_makes_no_call_into_unicorn(machine, monkeypatch):
    monkeypatch.setattr(memory_module, "_mem_write", None)  # a call would raise TypeError
    machine.memory.write_phys(0x1234, bytearray(b"in place"))
    machine.memory.write_u32(0x2000, 0x11223344)
    assert unicorns(machine, 0x1234, 8) == b"in place"
    assert unicorns(machine, 0x2000, 4) == bytes.fromhex("44332211")


def test_an_entry_loads_in_place_as_unicorn_holds_it(machine, monkeypatch):
    """load_entry, the read of every validated entry and every kernel store into a
    page table: both widths' formats, anywhere in RAM (its last bytes too), what
    uc_mem_read holds there, with no call into Unicorn; past RAM as read_phys."""
    machine.memory.write_phys(RAM - 0x10, bytes(range(0xF0, 0x100)))
    machine.uc.mem_write(0x3FF8, bytes.fromhex("6340001200000080"))
    expected = {(RAM - 8, "<Q"): bytes(range(0xF8, 0x100)),
                (RAM - 4, "<I"): bytes(range(0xFC, 0x100)),
                (0x3FF8, "<Q"): bytes.fromhex("6340001200000080"),
                (0x3FFC, "<I"): bytes.fromhex("00000080")}
    monkeypatch.setattr(memory_module, "_mem_read", None)  # a call would raise TypeError
    for (address, layout), raw in expected.items():
        entry = struct.Struct(layout)
        assert machine.memory.load_entry(address, entry) == int.from_bytes(raw, "little")
    monkeypatch.undo()
    with pytest.raises(UnassignedMemory):
        machine.memory.load_entry(RAM - 4, struct.Struct("<Q"))  # half past RAM
    apic_version = machine.memory.load_entry(APIC_BASE + 0x30, struct.Struct("<I"))
    assert apic_version.to_bytes(4, "little") == unicorns(machine, APIC_BASE + 0x30, 4)


def test_a_write_past_ram_is_unassigned_and_a_devices_goes_to_the_device(machine):
    with pytest.raises(UnassignedMemory):
        machine.memory.write_phys(RAM - 2, b"1234")
    with pytest.raises(UnassignedMemory):
        machine.memory.write_phys(RAM, b"1234")
    before = machine.memory.read_phys(APIC_BASE + 0x80, 4)  # the task priority register
    machine.memory.write_phys(APIC_BASE + 0x80, (0x20).to_bytes(4, "little"))
    assert machine.memory.read_phys(APIC_BASE + 0x80, 4) != before


def test_outside_ram_reads_go_through_unicorn_with_the_same_errors(machine):
    with pytest.raises(UnassignedMemory, match=f"{RAM:#x}"):
        machine.memory.read_phys(RAM, 4)
    with pytest.raises(UnassignedMemory):
        machine.memory.read_phys(RAM - 2, 4)  # half in RAM, half past it
    with pytest.raises(UnassignedMemory):
        machine.memory.read_u32(RAM - 2)
    with pytest.raises(UnassignedMemory):
        machine.memory.read_phys(RAM - PAGE_SIZE, 2 * PAGE_SIZE)
    # A device's registers: the local APIC's version register, through its MMIO
    # callback, as uc_mem_read reads it.
    version = machine.memory.read_phys(APIC_BASE + 0x30, 4)
    assert version == unicorns(machine, APIC_BASE + 0x30, 4) and version != bytes(4)


def test_memory_the_hypervisor_maps_past_ram_is_read_in_place_too(machine):
    machine.map_memory(0x4000_0000, 2 * PAGE_SIZE)
    machine.memory.write_phys(0x4000_0FFE, b"abcd")
    assert machine.memory.read_phys(0x4000_0FFE, 4) == b"abcd" == \
        unicorns(machine, 0x4000_0FFE, 4)
    assert bytes(machine.memory.host_view(0x4000_0FFE, 4)) == b"abcd"
    with pytest.raises(UnassignedMemory):
        machine.memory.read_phys(0x4000_1FFE, 4)  # past its end


def test_a_host_view_of_ram_reads_what_the_guest_stores(machine):
    view = machine.memory.host_view(0x5000, 4)
    machine.memory.write_phys(0x5000, b"wxyz")
    assert bytes(view) == b"wxyz" and view.readonly
    assert machine.memory.host_view(RAM - 2, 4) is None


def vm_rss_mib() -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) >> 10


def test_the_largest_ram_costs_only_the_pages_the_guest_touches():
    """--memory 3072 maps 3 GiB, allocated lazily: a machine, thousands of reads all
    over it (untouched pages read as zeros) and a few written pages add a few MiB."""
    before = vm_rss_mib()
    machine = Machine(ram_size=MAX_RAM, output=lambda _: None)
    rng = random.Random(3)
    for _ in range(4000):
        assert machine.memory.read_phys(rng.randrange(MAX_RAM - 8), 8) == bytes(8)
    for page in range(0, MAX_RAM, MAX_RAM // 16):
        machine.memory.write_phys(page, b"touched")
    assert machine.memory.read_phys(MAX_RAM - MAX_RAM // 16, 7) == b"touched"
    assert vm_rss_mib() - before < 64


def test_ram_is_private_to_the_process(machine):
    """A forked child gets a copy of the RAM, not the same RAM: its writes stay its own."""
    machine.memory.write_phys(0x6000, b"parent")
    pid = os.fork()
    if pid == 0:  # the child: no pytest here, only an exit status
        machine.memory.write_phys(0x6000, b"child!")
        os._exit(0 if machine.memory.read_phys(0x6000, 6) == b"child!" else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert machine.memory.read_phys(0x6000, 6) == b"parent"
