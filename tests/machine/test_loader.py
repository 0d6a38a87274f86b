"""machine/loader.py: what a Multiboot loader leaves in memory and in the CPU
(Multiboot specification 0.6.96, sections 3.2 and 3.3), decoded here independently
of pvtool's own structures. The values the specification leaves open are QEMU 7.2's
-kernel, as guests/probeboot prints them on QEMU (tests/e2e/test_probeboot.py checks
pvtool against a live QEMU; tests/machine/test_loader_qemu.py the image placement)."""

import struct

import pytest

from pvtool.errors import ImageError, UnsupportedImageError
from pvtool.image.elf import load_elf
from pvtool.machine import cpu as C
from pvtool.machine.loader import load_multiboot
from pvtool.machine.pc import Machine
from tests.machine.harness import boot_native, qemu, run_native

MB_MAGIC = 0x2BADB002
MIB = 1 << 20
# Info flags (3.3): 0 mem_*, 2 cmdline, 6 mmap_*, 9 boot_loader_name.
FLAG_MEMORY, FLAG_BOOT_DEVICE, FLAG_CMDLINE, FLAG_MODS = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FLAG_MMAP, FLAG_LOADER_NAME = 1 << 6, 1 << 9
AVAILABLE, RESERVED = 1, 2
SEABIOS_TOP = 0x20000

EMPTY = """
    .globl test_main
test_main:
    xor %eax, %eax
    ret
"""


def c_string(machine: Machine, addr: int) -> bytes:
    data = machine.memory.read_phys(addr, 4096)
    return data[:data.index(b"\0")]


def decode_info(machine: Machine) -> dict:
    """The Multiboot info structure at EBX, field by field (spec 3.3)."""
    read = machine.memory.read_phys
    base = machine.cpu.read(C.EBX)
    fields = struct.unpack("<13I", read(base, 52))
    info = dict(zip(("flags", "mem_lower", "mem_upper", "boot_device", "cmdline",
                     "mods_count", "mods_addr", "syms0", "syms1", "syms2", "syms3",
                     "mmap_length", "mmap_addr"), fields, strict=True))
    info["boot_loader_name"] = struct.unpack("<I", read(base + 64, 4))[0]
    entries, at, end = [], info["mmap_addr"], info["mmap_addr"] + info["mmap_length"]
    while at < end:  # each entry's size field counts the bytes after itself
        size, addr, length, kind = struct.unpack("<IQQI", read(at, 24))
        entries.append((size, addr, length, kind))
        at += size + 4
    info["mmap"] = entries
    return info


@pytest.mark.parametrize("ram_mib", [4, 16, 128, 3072])
def test_info_structure_describes_the_machines_memory(build, ram_mib):
    run = boot_native(build(EMPTY), ram_mib=ram_mib)
    info = decode_info(run.machine)
    top = ram_mib * MIB - SEABIOS_TOP  # SeaBIOS keeps the top 128 KiB of RAM

    assert info["flags"] == (FLAG_MEMORY | FLAG_BOOT_DEVICE | FLAG_CMDLINE | FLAG_MODS
                             | FLAG_MMAP | FLAG_LOADER_NAME)
    assert info["mem_lower"] == 639  # KiB below the EBDA, as QEMU's BIOS reports
    assert info["mem_upper"] == (top - MIB) // 1024  # KiB from 1 MiB to the first hole
    assert info["boot_device"] == 0x8000FFFF  # BIOS disk 0x80, no partition
    assert info["mmap"] == [
        (20, 0, 639 * 1024, AVAILABLE),
        (20, 639 * 1024, 1024, RESERVED),  # the EBDA
        (20, 0xF0000, 0x10000, RESERVED),  # the BIOS ROM
        (20, MIB, top - MIB, AVAILABLE),
        (20, top, SEABIOS_TOP, RESERVED),
        (20, 0xFFFC0000, 0x40000, RESERVED),  # the flash ROM below 4 GiB
    ]
    assert info["mmap_length"] == 6 * 24
    assert info["mods_count"] == 0
    assert c_string(run.machine, info["boot_loader_name"]) == b"qemu"


def test_the_info_parts_lie_where_qemu_puts_them(build):
    guest = build(EMPTY)
    run = boot_native(guest, cmdline=b"x" * 200)
    info = decode_info(run.machine)
    after_kernel = -(-run.boot.image_end // 4096) * 4096

    assert run.machine.cpu.read(C.EBX) == 0x9500
    assert info["mmap_addr"] == 0x9000
    # The (empty) module list, then the strings, on the page after the kernel.
    assert info["mods_addr"] == info["cmdline"] == after_kernel
    name_at = info["cmdline"] + len(str(guest.elf)) + 1 + 200 + 1
    assert info["boot_loader_name"] == name_at


def test_cmdline_is_the_kernels_path_a_space_and_the_given_string(build):
    guest = build(EMPTY)
    plain = boot_native(guest)
    assert c_string(plain.machine, decode_info(plain.machine)["cmdline"]) == \
        str(guest.elf).encode() + b" "

    given = boot_native(guest, cmdline=b"console=ttyS0 loglevel=7")
    assert c_string(given.machine, decode_info(given.machine)["cmdline"]) == \
        str(guest.elf).encode() + b" console=ttyS0 loglevel=7"


def test_modules_follow_the_strings_each_on_a_page_of_its_own(build, tmp_path):
    first, second = tmp_path / "one.bin", tmp_path / "two.bin"
    first.write_bytes(b"1" * 16)
    second.write_bytes(b"2" * 5000)
    guest = build(EMPTY)
    machine = Machine(ram_size=16 * MIB, output=lambda data: None)
    load_multiboot(machine, load_elf(guest.elf), cmdline=b"go", modules=(first, second))
    info = decode_info(machine)

    assert info["mods_count"] == 2
    entries = [struct.unpack("<4I", machine.memory.read_phys(info["mods_addr"] + 16 * i, 16))
               for i in range(2)]
    strings_at = info["mods_addr"] + 32
    assert [c_string(machine, e[2]) for e in entries] == [str(first).encode(),
                                                          str(second).encode()]
    assert entries[0][2] == strings_at  # module strings first, then the command line
    assert info["cmdline"] == strings_at + len(str(first)) + len(str(second)) + 2
    extras_end = info["boot_loader_name"] + len(b"qemu\0")
    start = -(-extras_end // 4096) * 4096
    assert entries[0][:2] == (start, start + 16)
    assert entries[1][:2] == (start + 4096, start + 4096 + 5000)
    assert machine.memory.read_phys(start + 4096, 5000) == b"2" * 5000


def test_registers_at_entry_are_what_the_specification_promises(build):
    guest = build(EMPTY)
    run = boot_native(guest)
    cpu = run.machine.cpu

    assert cpu.read(C.EIP) == guest["_start"]
    assert cpu.read(C.EAX) == MB_MAGIC
    assert cpu.read(C.CR0) & 0x8000_0001 == 0x1  # PE on, PG off
    assert cpu.read(C.EFLAGS) & ((1 << 9) | (1 << 17)) == 0  # IF and VM clear
    assert cpu.cpl == 0
    gdt_base, gdt_limit = cpu.descriptor_table(C.GDTR)

    def descriptor(selector: int) -> int:
        assert selector & 4 == 0 and (selector | 7) <= gdt_limit
        return int.from_bytes(run.machine.memory.read_phys(gdt_base + (selector & ~7), 8),
                              "little")

    def flat(raw: int) -> bool:  # base 0, limit 0xFFFFF pages, 32-bit, present, DPL 0
        base = (raw >> 16) & 0xFFFFFF | (raw >> 56) << 24
        limit = raw & 0xFFFF | ((raw >> 48) & 0xF) << 16
        return (base, limit, (raw >> 55) & 1, (raw >> 54) & 1, (raw >> 47) & 1,
                (raw >> 45) & 3) == (0, 0xFFFFF, 1, 1, 1, 0)

    code = descriptor(cpu.read(C.CS))
    assert flat(code) and (code >> 43) & 3 == 0b11  # S=1 code, readable
    assert (code >> 41) & 1
    for seg in (C.DS, C.ES, C.FS, C.GS, C.SS):
        data = descriptor(cpu.read(seg))
        assert flat(data) and (data >> 43) & 3 == 0b10 and (data >> 41) & 1  # writable


def test_registers_the_specification_leaves_open_are_qemus(build):
    guest = build(EMPTY)
    cpu = boot_native(guest, ram_mib=512).machine.cpu
    mem_upper = (512 * MIB - SEABIOS_TOP - MIB) // 1024

    assert cpu.read(C.ECX) == guest["_start"]  # the option ROM jumps through ECX
    assert cpu.read(C.EDX) == mem_upper & 0xFFFF0000 | 0x0511
    assert (cpu.read(C.ESI), cpu.read(C.EDI), cpu.read(C.EBP)) == (0, 0x1000, 0)
    assert cpu.read(C.ESP) == 0x6F08  # the option ROM's stack: usable for a push
    assert cpu.read(C.EFLAGS) == 0x6  # PF, and the reserved bit
    assert (cpu.read(C.CR0), cpu.read(C.CR4)) == (0x11, 0)
    assert cpu.descriptor_table(C.IDTR) == (0, 0x3FF)  # still the real-mode IVT
    assert cpu.descriptor_table(C.GDTR) == (0xCA2B8, 5 * 8 - 1)


def test_the_option_roms_gdt_reads_as_qemu_leaves_it(build):
    run = boot_native(build(EMPTY))
    gdt = run.machine.memory.read_phys(0xCA2B8, 40)
    # Null; flat 32-bit code (not accessed) and data (accessed); 16-bit code and data.
    assert struct.unpack("<5Q", gdt) == (0, 0x00CF9A000000FFFF, 0x00CF93000000FFFF,
                                          0x00009E000000FFFF, 0x000092000000FFFF)


def test_entry_state_a_guest_sees_is_qemus_where_the_spec_fixes_it(build):
    # The runtime saves EAX, EBX, CR0 and EFLAGS before touching anything; this guest
    # prints them (IF and VM of EFLAGS only: the arithmetic flags are undefined).
    guest = build("""
    .include "macros.inc"
    .globl test_main
test_main:
    REC boot_eax
    REC boot_cr0
    mov boot_eflags, %eax
    and $0x20200, %eax
    REC %eax
    mov boot_ebx, %eax
    REC 4(%eax)                 # mem_lower
    mov (%eax), %ebx
    and $(1 << 0) | (1 << 2) | (1 << 6), %ebx
    REC %ebx                    # flags: mem_*, cmdline, mmap_* valid
    xor %eax, %eax
    ret
""")
    run = run_native(guest)

    assert run.records() == [MB_MAGIC, 0x11, 0, 639, FLAG_MEMORY | FLAG_CMDLINE | FLAG_MMAP]
    assert bytes(run.output) == qemu(guest).stdout


def test_loaded_segments_are_the_files_bytes_and_bss_is_zeroed(build):
    guest = build(EMPTY + """
    .bss
    .globl big_bss
big_bss:
    .space 0x3000
""")
    machine = Machine(ram_size=16 * MIB, output=lambda data: None)
    machine.memory.write_phys(MIB, b"\xaa" * (2 * MIB))  # RAM a previous run dirtied
    image = load_elf(guest.elf)
    load_multiboot(machine, image)

    text = guest.elf.read_bytes()
    start = guest["multiboot_header"]
    assert machine.memory.read_phys(start, 12) == struct.pack("<3I", 0x1BADB002, 3,
                                                              (-(0x1BADB002 + 3)) & 0xFFFFFFFF)
    header_at = text.index(struct.pack("<I", 0x1BADB002))
    assert machine.memory.read_phys(start, 256) == text[header_at:header_at + 256]
    assert machine.memory.read_phys(guest["big_bss"], 0x3000) == bytes(0x3000)


NO_MULTIBOOT = """
    .globl _start
_start:
    hlt
"""


def test_an_elf_without_a_multiboot_header_is_refused(build):
    guest = build(NO_MULTIBOOT, runtime=False)
    machine = Machine(output=lambda data: None)
    with pytest.raises(UnsupportedImageError, match="no Multiboot header") as refused:
        load_multiboot(machine, load_elf(guest.elf))
    assert refused.value.exit_status == 69


TINY = """
    .text
    .long 0x1BADB002, 0x3, -(0x1BADB002 + 0x3)
    .globl _start
_start:
    hlt
    .bss
    .space {size:#x}
"""


@pytest.mark.parametrize("size, fits", [(0x1000, True), (0x1001, False)])
def test_a_segment_must_end_inside_ram(build, size, fits):
    # .bss at 4 MiB - 4 KiB: 0x1000 bytes end exactly at the end of a 4 MiB machine.
    guest = build(TINY.format(size=size), runtime=False, ld_args=("-Tbss", "0x3ff000"))
    machine = Machine(ram_size=4 * MIB, output=lambda data: None)
    if fits:
        boot = load_multiboot(machine, load_elf(guest.elf))
        assert boot.image_end == 4 * MIB
    else:
        with pytest.raises(UnsupportedImageError, match="0x3ff000") as refused:
            load_multiboot(machine, load_elf(guest.elf))
        assert refused.value.exit_status == 69


def test_a_segment_below_1_mib_is_loaded_there(build):
    guest = build(TINY.format(size=0x10), runtime=False, text=0x8000)
    machine = Machine(output=lambda data: None)
    boot = load_multiboot(machine, load_elf(guest.elf))
    assert boot.entry == guest["_start"] == machine.cpu.read(C.EIP)
    assert machine.memory.read_phys(0x8000, 4) == struct.pack("<I", 0x1BADB002)


def test_a_segment_in_the_vga_window_is_refused(build):
    guest = build(TINY.format(size=0x10), runtime=False, text=0xB0000)
    machine = Machine(output=lambda data: None)
    with pytest.raises(UnsupportedImageError, match="VGA window") as refused:
        load_multiboot(machine, load_elf(guest.elf))
    assert refused.value.exit_status == 69


AOUT_HALT = """
    .text
    .p2align 2
    .long 0x1BADB002, 0x10003, -(0x1BADB002 + 0x10003)
    .long 0x200000, 0x200000, 0, 0, 0x200020      # header, load, ends, entry at 2 MiB
    .p2align 5
    .globl _start
_start:
    cli
    hlt
"""


def test_a_hlt_is_watched_where_the_aout_kludge_loaded_it(build):
    guest = build(AOUT_HALT, runtime=False)  # linked at 1 MiB, loaded at 2 MiB
    run = boot_native(guest)
    assert run.boot.entry == 0x200020
    run.machine.run_slice(100)
    assert run.machine.cpu.read(C.EIP) == 0x200022  # after the hlt
    assert run.machine.halted()


def test_an_elfs_aout_kludge_fields_are_checked_as_a_flat_binarys(build):
    # QEMU refuses a bss_end_addr inside the loaded text whatever the file (and so
    # does the flat-binary path: tests/e2e/test_flat_binary.py).
    source = AOUT_HALT.replace("0x200000, 0x200000, 0, 0,", "0x200000, 0x200000, 0, 0x200004,")
    machine = Machine(output=lambda data: None)
    with pytest.raises(ImageError, match="bss_end_addr 0x200004 below") as refused:
        load_multiboot(machine, load_elf(build(source, runtime=False).elf))
    assert refused.value.exit_status == 65
