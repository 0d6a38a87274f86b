"""The Multiboot header search and the info structure, checked against the 0.6.96
specification's own offsets (section 3.3), decoded here independently with struct."""

import struct

import pytest

from pvtool.errors import ImageError
from pvtool.image.elf import load_elf
from pvtool.image.multiboot import (
    BOOTLOADER_MAGIC,
    HEADER_MAGIC,
    InfoLayout,
    Module,
    build_info,
    extras_size,
    find_header,
)
from tests.image.elfs import KERNEL_ASM, build_kernel, tool_output

HEADER_3 = ".long 0x1BADB002\n    .long 0x00000003\n    .long -(0x1BADB002 + 0x00000003)"


def kernel_with_header(tmp_path, header_asm: str, **link):
    return load_elf(build_kernel(tmp_path, KERNEL_ASM.replace(HEADER_3, header_asm), **link))


# ---- the header -------------------------------------------------------------------------

def test_magic_numbers_are_the_specification_s():
    assert HEADER_MAGIC == 0x1BADB002
    assert BOOTLOADER_MAGIC == 0x2BADB002


def test_header_at_start_of_text_is_found(kernel):
    header = find_header(load_elf(kernel))
    assert header.offset == 0x1000
    assert header.flags == 3 and header.page_align and header.memory_info
    assert not header.video_mode and not header.aout_kludge
    assert (header.flags + header.checksum + HEADER_MAGIC) & 0xFFFFFFFF == 0
    assert header.load_addr is None and header.width is None
    assert header.unknown_required_flags == 0


def test_aout_kludge_fields_are_read(tmp_path):
    image = kernel_with_header(tmp_path, """
    .long 0x1BADB002
    .long 0x00010000
    .long -(0x1BADB002 + 0x00010000)
    .long 0x100000, 0x100000, 0x101000, 0x103000, 0x10000c
    """)
    header = find_header(image)
    assert header.aout_kludge
    assert (header.header_addr, header.load_addr, header.load_end_addr,
            header.bss_end_addr, header.entry_addr) == \
        (0x100000, 0x100000, 0x101000, 0x103000, 0x10000c)


def test_video_fields_are_read(tmp_path):
    image = kernel_with_header(tmp_path, """
    .long 0x1BADB002
    .long 0x00000004
    .long -(0x1BADB002 + 0x00000004)
    .long 0, 0, 0, 0, 0
    .long 1, 80, 25, 0
    """)
    header = find_header(image)
    assert header.video_mode and header.load_addr is None
    assert (header.mode_type, header.width, header.height, header.depth) == (1, 80, 25, 0)


def test_unknown_required_flag_is_reported(tmp_path):
    image = kernel_with_header(tmp_path, """
    .long 0x1BADB002
    .long 0x00000108
    .long -(0x1BADB002 + 0x00000108)
    """)
    assert find_header(image).unknown_required_flags == 0x108


def test_no_header_is_none(tmp_path):
    image = kernel_with_header(tmp_path, ".long 0")
    assert find_header(image) is None


def test_magic_not_on_a_4_byte_boundary_is_ignored(tmp_path):
    image = kernel_with_header(tmp_path, f".byte 0, 0\n    {HEADER_3}")
    assert find_header(image) is None


def test_header_beyond_the_first_8_kib_is_not_found(tmp_path):
    # ld's default layout puts a separate read-only section one page after .text.
    asm = KERNEL_ASM.replace(HEADER_3, ".long 0").replace(
        "    .data\n", f'    .section .mbhdr, "a"\n    .align 4\n    {HEADER_3}\n    .data\n', 1)
    path = build_kernel(tmp_path, asm, script=None, ld_args=("-Ttext=0x100000",))
    listing, _ = tool_output("readelf", "-SW", str(path))
    assert int(listing.split(".mbhdr")[1].split()[2], 16) >= 8192
    assert find_header(load_elf(path)) is None


def test_bad_checksum_is_an_image_error(tmp_path):
    image = kernel_with_header(tmp_path, ".long 0x1BADB002, 3, 0x12345678")
    with pytest.raises(ImageError, match="bad checksum") as err:
        find_header(image)
    assert err.value.exit_status == 65


def test_valid_header_after_a_stray_magic_wins(tmp_path):
    image = kernel_with_header(tmp_path, f".long 0x1BADB002, 3, 0\n    {HEADER_3}")
    assert find_header(image).offset == 0x100c


# ---- the info structure -----------------------------------------------------------------

# Three places, as QEMU scatters them: the structure, the E820 entries, the extras.
LAYOUT = InfoLayout(info_addr=0x9500, mmap_addr=0x9000, extras_addr=0x10B000)
MMAP = [(0, 0x9FC00, 1), (0x9FC00, 0x400, 2), (0x100000, 0x7F00000, 1),
        (0xFFFC0000, 0x40000, 2)]
MODULES = [Module(0x200000, 0x201234, b"initrd root=/dev/hda"),
           Module(0x202000, 0x202000, b"")]


class Memory:
    """The info's pieces written into a sparse physical memory, read as a kernel reads."""

    def __init__(self, info):
        self.bytes = {}
        for addr, data in info.pieces():
            for i, byte in enumerate(data):
                assert addr + i not in self.bytes, "pieces overlap"
                self.bytes[addr + i] = byte

    def read(self, addr: int, size: int) -> bytes:
        return bytes(self.bytes[a] for a in range(addr, addr + size))

    def u32(self, addr: int) -> int:
        return struct.unpack("<I", self.read(addr, 4))[0]

    def field(self, offset: int) -> int:
        return self.u32(LAYOUT.info_addr + offset)

    def c_string(self, addr: int) -> bytes:
        end = addr
        while self.bytes[end]:
            end += 1
        return self.read(addr, end - addr)


@pytest.fixture
def full_info():
    return Memory(build_info(LAYOUT, mem_lower_kib=639, mem_upper_kib=130048, mmap=MMAP,
                             cmdline=b"console=ttyS0 debug", modules=MODULES,
                             bootloader_name=b"pvtool 0.1", boot_device=0x80FFFFFF))


def test_info_flags_and_memory_fields(full_info):
    flags = full_info.field(0)
    assert flags == (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 6) | (1 << 9)
    assert (full_info.field(4), full_info.field(8)) == (639, 130048)
    assert full_info.field(12) == 0x80FFFFFF


def test_info_command_line_and_loader_name_are_c_strings(full_info):
    assert full_info.c_string(full_info.field(16)) == b"console=ttyS0 debug"
    assert full_info.c_string(full_info.field(64)) == b"pvtool 0.1"


def test_info_memory_map_walks_like_a_kernel_walks_it(full_info):
    length, addr = full_info.field(44), full_info.field(48)
    assert length == len(MMAP) * 24 and addr == LAYOUT.mmap_addr
    entries, at = [], addr
    while at < addr + length:  # the loop of the specification's example kernel (boot.c)
        size, base, size_bytes, kind = struct.unpack("<IQQI", full_info.read(at, 24))
        assert size == 20
        entries.append((base, size_bytes, kind))
        at += size + 4
    assert entries == MMAP


def test_info_modules_point_at_their_strings(full_info):
    count, addr = full_info.field(20), full_info.field(24)
    assert count == len(MODULES) and addr == LAYOUT.extras_addr
    for i, module in enumerate(MODULES):
        start, end, string, reserved = struct.unpack("<4I", full_info.read(addr + 16 * i, 16))
        assert (start, end, reserved) == (module.start, module.end, 0)
        assert full_info.c_string(string) == module.string


def test_info_extras_are_module_list_module_strings_cmdline_name_packed():
    info = build_info(LAYOUT, mem_lower_kib=639, mem_upper_kib=1024, cmdline=b"k a",
                      modules=MODULES, bootloader_name=b"qemu")
    expected = (b"".join(struct.pack("<4I", m.start, m.end, 0, 0) for m in MODULES)
                + b"initrd root=/dev/hda\0" + b"\0" + b"k a\0" + b"qemu\0")
    # The string pointers aside, the bytes are these, in this order.
    extras = bytearray(info.extras)
    for i in range(len(MODULES)):
        extras[16 * i + 8:16 * i + 12] = bytes(4)
    assert bytes(extras) == expected
    assert len(info.extras) == extras_size(b"k a", [m.string for m in MODULES], b"qemu")


def test_info_unused_fields_stay_zero(full_info):
    raw = full_info.read(LAYOUT.info_addr, 116)
    assert raw[28:44] == bytes(16)  # a.out / ELF symbols (bits 4, 5)
    assert raw[52:64] == bytes(12)  # drives, config table (bits 7, 8)
    assert raw[68:116] == bytes(48)  # APM, VBE, framebuffer (bits 10-12)


def test_minimal_info_sets_only_what_it_has():
    memory = Memory(build_info(LAYOUT, mem_lower_kib=640, mem_upper_kib=0))
    assert memory.field(0) == (1 << 0) | (1 << 2) | (1 << 3)  # mods: a list of none
    assert memory.c_string(memory.field(16)) == b""
    assert memory.field(20) == 0 and memory.field(24) == LAYOUT.extras_addr
    assert memory.field(44) == memory.field(48) == 0
    assert memory.field(12) == 0 and memory.field(64) == 0


def test_info_refuses_a_string_with_a_nul():
    with pytest.raises(ValueError, match="NUL"):
        build_info(LAYOUT, mem_lower_kib=639, mem_upper_kib=1024, cmdline=b"a\0b")


def test_info_refuses_an_unaligned_address():
    with pytest.raises(ValueError, match="aligned"):
        build_info(InfoLayout(0x9502, 0x9000, 0x10000), mem_lower_kib=639, mem_upper_kib=1024)


def test_info_refuses_a_backwards_module():
    with pytest.raises(ValueError, match="bad range"):
        build_info(LAYOUT, mem_lower_kib=639, mem_upper_kib=1024,
                   modules=[Module(0x3000, 0x2000, b"x")])


def test_info_extras_may_start_anywhere():
    layout = InfoLayout(info_addr=0x9500, mmap_addr=0x9000, extras_addr=0x101003)
    memory = Memory(build_info(layout, mem_lower_kib=639, mem_upper_kib=1024,
                               cmdline=b"odd"))
    assert memory.c_string(memory.field(16)) == b"odd"
    assert memory.field(16) == 0x101003
