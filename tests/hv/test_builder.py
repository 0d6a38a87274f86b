"""The domain builder: Xen's boot layout (XEN-ABI.md, "Boot") as a kernel written for
Xen finds it at its first instruction, before it has run any.

Expected values come from XEN-ABI.md and from the test guest's own symbols; the page
tables are walked by the test itself (harness.Booted.pte), not by pvtool's walker.
"""

import struct

import pytest

from pvtool.errors import UnsupportedImageError
from pvtool.hv.boot import boot_pv_domain
from pvtool.image.elf import load_elf
from pvtool.machine.cpu import CR3, CS, DS, EFLAGS, EIP, ES, ESI, ESP, FS, GS, SS
from pvtool.machine.pc import Machine
from tests.hv.harness import RW, P, boot
from tests.hv.xenguest import DEFAULT_NOTES, FLAT_RING1_CS, FLAT_RING1_DS, KERNEL_BASE

PAGE = 4096
FOUR_MIB = 4 << 20
START_INFO_SIZE = 1112

# start_info field offsets, 32-bit (XEN-ABI.md, "Structures").
SI_NR_PAGES, SI_SHARED_INFO, SI_FLAGS = 32, 36, 40
SI_STORE_MFN, SI_CONSOLE_MFN = 44, 52
SI_PT_BASE, SI_NR_PT_FRAMES, SI_MFN_LIST = 60, 64, 68
SI_MOD_START, SI_MOD_LEN, SI_CMD_LINE = 72, 76, 80

KERNEL_TEXT = """
    mov eax, 0x11223344
    nop
"""


def page_up(value: int) -> int:
    return -(-value // PAGE) * PAGE


def start_info(booted) -> bytes:
    return booted.memory.read_phys(booted.cpu.read(ESI), START_INFO_SIZE)


def field(info: bytes, offset: int) -> int:
    return struct.unpack_from("<I", info, offset)[0]


@pytest.fixture(scope="module")
def kernel(build):
    return build(KERNEL_TEXT, data="marker: .ascii \"pvtool\"", bss="zeroes: .skip 8192")


@pytest.fixture
def booted(kernel):
    return boot(kernel, cmdline=b"console=hvc0 root=/dev/xvda1")


def test_start_info_magic_names_xen_3_0_on_32_bit_without_pae(booted):
    assert start_info(booted)[:32] == b"xen-3.0-x86_32".ljust(32, b"\0")


def test_start_info_counts_every_page_of_the_domain(booted):
    assert field(start_info(booted), SI_NR_PAGES) == booted.machine.ram_size // PAGE


def test_start_info_carries_the_command_line_nul_terminated(booted):
    cmd_line = start_info(booted)[SI_CMD_LINE:SI_CMD_LINE + 1024]
    assert cmd_line.split(b"\0")[0] == b"console=hvc0 root=/dev/xvda1"
    assert set(cmd_line[len(b"console=hvc0 root=/dev/xvda1"):]) == {0}


def test_a_command_line_longer_than_the_field_is_cut_and_still_terminated(kernel):
    booted = boot(kernel, cmdline=b"x" * 2000)
    cmd_line = start_info(booted)[SI_CMD_LINE:SI_CMD_LINE + 1024]
    assert cmd_line == b"x" * 1023 + b"\0"


def test_no_boot_module_is_announced(booted):
    info = start_info(booted)
    assert (field(info, SI_MOD_START), field(info, SI_MOD_LEN)) == (0, 0)


def test_boot_structures_follow_the_kernel_in_xens_order(booted, kernel):
    """p2m list, start_info, xenstore page, console page, page tables, boot stack:
    each page aligned, right after the kernel's last byte (its .bss stack)."""
    info = start_info(booted)
    kernel_end = kernel["stack_top"]
    nr_pages = field(info, SI_NR_PAGES)
    p2m = field(info, SI_MFN_LIST)
    start_info_va = booted.cpu.read(ESI)
    pt_base = field(info, SI_PT_BASE)
    assert p2m == page_up(kernel_end)
    assert start_info_va == p2m + page_up(4 * nr_pages)
    assert field(info, SI_STORE_MFN) * PAGE == start_info_va + PAGE
    assert field(info, SI_CONSOLE_MFN) * PAGE == start_info_va + 2 * PAGE
    assert pt_base == start_info_va + 3 * PAGE
    # ESP: the top of one stack page right after the page tables.
    assert booted.cpu.read(ESP) == pt_base + field(info, SI_NR_PT_FRAMES) * PAGE + PAGE


def test_the_p2m_list_is_the_identity_over_every_page(booted):
    info = start_info(booted)
    nr_pages = field(info, SI_NR_PAGES)
    p2m = booted.memory.read_phys(field(info, SI_MFN_LIST), 4 * nr_pages)
    assert struct.unpack(f"<{nr_pages}I", p2m) == tuple(range(nr_pages))


def test_pt_base_is_the_page_directory_in_cr3(booted):
    assert field(start_info(booted), SI_PT_BASE) == booted.cpu.read(CR3)


def test_nr_pt_frames_counts_the_directory_and_its_tables(booted):
    """One L2 plus one L1 per guest slot it uses (below the hypervisor's slots)."""
    cr3 = booted.cpu.read(CR3)
    pdes = struct.unpack("<1008I", booted.memory.read_phys(cr3, 4 * 1008))
    used = [slot for slot, pde in enumerate(pdes) if pde & P]
    assert field(start_info(booted), SI_NR_PT_FRAMES) == 1 + len(used)


def test_shared_info_is_a_page_the_domain_can_map_and_its_upcall_mask_is_set(booted):
    """shared_info is a machine address outside the domain's RAM (it is not mapped at
    boot); every vcpu_info's evtchn_upcall_mask starts at 1 (XEN-ABI.md)."""
    address = field(start_info(booted), SI_SHARED_INFO)
    assert address % PAGE == 0
    assert address >= booted.machine.ram_size
    shared = booted.memory.read_phys(address, 2344)
    assert [shared[64 * vcpu + 1] for vcpu in range(32)] == [1] * 32
    assert [shared[64 * vcpu] for vcpu in range(32)] == [0] * 32  # nothing pending


def test_bootstrap_tables_map_the_layout_one_to_one_up_to_a_4_mib_boundary(booted):
    """Virtual = physical (VIRT_BASE 0), everything from 0 to the end of the mapping,
    which is 4 MiB aligned and leaves at least 512 KiB after the boot stack."""
    stack_top = booted.cpu.read(ESP)
    mapped = []
    for vaddr in range(0, 64 << 20, PAGE):
        pte = booted.pte(vaddr)
        if not pte & P:
            break
        assert pte & ~0xFFF == vaddr, f"{vaddr:#x} maps {pte:#x}"
        mapped.append(vaddr)
    v_end = len(mapped) * PAGE
    assert v_end % FOUR_MIB == 0
    assert v_end - stack_top >= 512 << 10
    # Nothing is mapped past the end, up to the hypervisor's slots.
    assert all(not booted.pte(v) & P for v in range(v_end, v_end + FOUR_MIB, PAGE))
    assert all(not booted.pde(v) & P for v in range(v_end + FOUR_MIB, 0xFC000000, FOUR_MIB))


def test_page_table_frames_are_mapped_read_only_and_everything_else_writable(booted, kernel):
    info = start_info(booted)
    pt_base, nr_pt = field(info, SI_PT_BASE), field(info, SI_NR_PT_FRAMES)
    tables = range(pt_base, pt_base + nr_pt * PAGE, PAGE)
    for vaddr in tables:
        assert booted.pte(vaddr) & (P | RW) == P, f"page table {vaddr:#x} is writable"
    for vaddr in (KERNEL_BASE, kernel["marker"], kernel["zeroes"], booted.cpu.read(ESI),
                  field(info, SI_MFN_LIST), pt_base - PAGE, booted.cpu.read(ESP) - PAGE):
        assert booted.pte(vaddr) & (P | RW) == P | RW, f"{vaddr:#x} is not writable"
    # The directory entries themselves are writable: only the leaf protects a table.
    assert booted.pde(pt_base) & (P | RW) == P | RW


def test_the_kernel_is_loaded_with_its_bss_zeroed(booted, kernel):
    memory = booted.memory
    assert memory.read_phys(kernel["marker"], 6) == b"pvtool"
    assert memory.read_phys(kernel["zeroes"], 8192) == bytes(8192)
    # mov eax, 0x11223344 right after the three-instruction prologue of the template.
    text = memory.read_phys(KERNEL_BASE, 64)
    assert bytes.fromhex("b844332211") in text


def test_the_vcpu_enters_the_kernel_in_ring_1_with_xens_flat_selectors(booted, kernel):
    cpu = booted.cpu
    assert cpu.cpl == 1
    assert cpu.read(EIP) == kernel["_start"]
    assert cpu.read(CS) == FLAT_RING1_CS
    assert [cpu.read(r) for r in (DS, ES, FS, GS, SS)] == [FLAT_RING1_DS] * 5
    assert cpu.read(EFLAGS) & 0x200  # the real IF; the virtual IF is the upcall mask
    assert booted.domain.upcall_mask == 1


def test_the_entry_note_wins_over_the_elf_entry_point(build):
    guest = build("", handlers="note_entry:\n    jmp _start",
                  notes=DEFAULT_NOTES, entry="note_entry", e_entry="_start")
    booted = boot(guest)
    assert load_elf(guest.path).entry == guest["_start"]
    assert booted.cpu.read(EIP) == guest["note_entry"] != guest["_start"]
    booted.run()
    assert booted.machine.stop.reason == "shutdown (poweroff)"


def test_the_hypercall_page_holds_xens_32_bit_stubs(booted, kernel):
    """XEN-ABI.md: entry i at 32*i is `b8 <i:le32> cd 82 c3`; the iret entry (23) is
    `50 b8 17 00 00 00 cd 82` with no ret."""
    page = booted.memory.read_phys(kernel["hypercall_page"], PAGE)
    for number in range(128):
        entry = page[32 * number:32 * number + 32]
        if number == 23:
            assert entry[:8] == bytes.fromhex("50b817000000cd82")
            assert entry[8] != 0xC3
        else:
            assert entry[:8] == b"\xb8" + number.to_bytes(4, "little") + b"\xcd\x82\xc3"


def test_a_kernel_that_crosses_a_4_mib_boundary_gets_a_second_page_table(build):
    """3.5 MiB of .bss at 1 MiB: the layout runs past 4 MiB, so the bootstrap tables
    need two L1s and the mapping reaches the next 4 MiB boundary with room to spare."""
    booted = boot(build("", bss="big: .skip 0x380000"))
    info = start_info(booted)
    assert field(info, SI_NR_PT_FRAMES) == 3
    stack_top = booted.cpu.read(ESP)
    assert stack_top > FOUR_MIB
    v_end = 2 * FOUR_MIB
    assert v_end - stack_top >= 512 << 10
    assert all(booted.pte(v) & ~0xFFF == v for v in range(0, v_end, PAGE))
    assert not booted.pde(v_end) & P


def test_a_higher_half_kernel_is_laid_out_at_its_virt_base(build):
    """VIRT_BASE 0xC0000000, linked at 0xC0100000: the kernel lands at physical 1 MiB
    and every address start_info gives is virtual (base + pfn * 4096)."""
    virt_base = 0xC0000000
    notes = tuple((t, ".long 0xC0000000") if t == 3 else (t, d) for t, d in DEFAULT_NOTES)
    guest = build(KERNEL_TEXT, notes=notes, base=virt_base + KERNEL_BASE)
    booted = boot(guest)
    cpu, memory = booted.cpu, booted.memory
    si = cpu.read(ESI)
    assert si >= virt_base
    info = memory.read_phys(si - virt_base, START_INFO_SIZE)
    assert info[:14] == b"xen-3.0-x86_32"
    assert field(info, SI_PT_BASE) - virt_base == cpu.read(CR3)
    assert field(info, SI_MFN_LIST) == page_up(guest["stack_top"])
    assert cpu.read(EIP) == guest["_start"]
    assert booted.pte(guest["_start"]) & ~0xFFF == (guest["_start"] - virt_base) & ~0xFFF
    assert memory.read_phys(guest["hypercall_page"] - virt_base, 8) == bytes.fromhex(
        "b800000000cd82c3")
    booted.run()
    assert booted.machine.stop.reason == "shutdown (poweroff)"


def test_a_kernel_without_xen_notes_is_refused(build, tmp_path):
    guest = build("", notes=())
    with pytest.raises(UnsupportedImageError, match="no Xen ELF notes"):
        boot_pv_domain(Machine(ram_size=16 << 20, output=lambda _: None),
                       load_elf(guest.path))


# -- modules and the Multiboot table (docs/ABI.md, "Modules and the command line") ------

MODULE_DATA = (b"initrd bytes\x00\xff", b"M" * 5000)
MULTIBOOT_TABLE_OFFSET = START_INFO_SIZE  # right after struct start_info
MODULE_ENTRY = struct.Struct("<4I")  # Multiboot 3.3: mod_start, mod_end, string, reserved


def module_files(tmp_path, count):
    paths = []
    for index, data in enumerate(MODULE_DATA[:count]):
        path = tmp_path / f"module{index}.bin"
        path.write_bytes(data)
        paths.append(path)
    return tuple(paths)


def c_string(booted, address: int) -> bytes:
    return booted.memory.read_phys(address, 4096).split(b"\0")[0]


def test_one_module_is_announced_as_xen_announces_its_initrd(kernel, tmp_path):
    """On the page after the kernel, mod_start virtual and mod_len its size; the boot
    structures follow it."""
    (module,) = module_files(tmp_path, 1)
    booted = boot(kernel, modules=(module,))
    info = start_info(booted)
    mod_start, mod_len = field(info, SI_MOD_START), field(info, SI_MOD_LEN)
    assert mod_start == page_up(kernel["stack_top"])
    assert mod_len == len(MODULE_DATA[0])
    assert booted.memory.read_phys(mod_start, mod_len) == MODULE_DATA[0]  # VIRT_BASE 0
    assert field(info, SI_MFN_LIST) == page_up(mod_start + mod_len)


def test_several_modules_follow_each_other_and_pvtools_table_lists_them(kernel, tmp_path):
    modules = module_files(tmp_path, 2)
    booted = boot(kernel, cmdline=b"quiet  x", modules=modules)
    info = start_info(booted)
    first = page_up(kernel["stack_top"])
    second = page_up(first + len(MODULE_DATA[0]))
    assert field(info, SI_MOD_START) == first
    assert field(info, SI_MOD_LEN) == second + len(MODULE_DATA[1]) - first
    table = booted.memory.read_phys(booted.cpu.read(ESI) + MULTIBOOT_TABLE_OFFSET, 12)
    cmdline, count, mods_addr = struct.unpack("<3I", table)
    assert c_string(booted, cmdline) == str(kernel.path).encode() + b" quiet  x"
    assert count == 2
    entries = [MODULE_ENTRY.unpack(booted.memory.read_phys(mods_addr + 16 * i, 16))
               for i in range(2)]
    assert [(start, end) for start, end, _, _ in entries] == [
        (first, first + len(MODULE_DATA[0])), (second, second + len(MODULE_DATA[1]))]
    assert [c_string(booted, string) for _, _, string, _ in entries] == [
        str(path).encode() for path in modules]
    for (start, end, _, _), data in zip(entries, MODULE_DATA, strict=True):
        assert booted.memory.read_phys(start, end - start) == data


def test_without_modules_the_table_has_the_command_line_and_no_module(booted, kernel):
    table = booted.memory.read_phys(booted.cpu.read(ESI) + MULTIBOOT_TABLE_OFFSET, 12)
    cmdline, count, _ = struct.unpack("<3I", table)
    assert c_string(booted, cmdline) == str(kernel.path).encode() + b" console=hvc0 root=/dev/xvda1"
    assert count == 0
