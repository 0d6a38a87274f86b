"""load_elf and ElfImage against real kernels, 32- and 64-bit, with readelf as the
independent reader."""

import re
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvtool.errors import (
    ImageError,
    InputMissingError,
    PvtoolError,
    UnsupportedImageError,
)
from pvtool.image import elf
from pvtool.image.elf import ElfImage, load_elf, require_32bit
from tests.image.elfs import (
    KERNEL64_ASM,
    assemble,
    build_elf64,
    build_kernel,
    poke,
    tool_output,
)
from tests.profiles import examples

E_MACHINE = 18
PHDR_SIZE = 32
P_OFFSET, P_VADDR, P_FILESZ, P_MEMSZ = 4, 8, 16, 20
# Elf64_Phdr: p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
PHDR64_SIZE, E_PHOFF64 = 56, 32
P_VADDR64, P_FILESZ64, P_MEMSZ64 = 16, 32, 40
READELF_LOAD = re.compile(
    r"^\s+LOAD\s+0x(\w+) 0x(\w+) 0x(\w+) 0x(\w+) 0x(\w+) (R?)\s?(W?)\s?(E?)\s+0x\w+$", re.M)
# What readelf -h calls each class and machine pvtool reads.
READELF_CLASS = {"ELF32": 32, "ELF64": 64}
READELF_MACHINE = {"Intel 80386": 3, "Advanced Micro Devices X86-64": 62}
KERNELS = ["kernel", "higher_half_kernel", "kernel64", "higher_half_kernel64"]
AT_1_MIB = ["kernel", "kernel64"]  # the kernels linked where they are loaded


def phdr_offset(path: Path, index: int) -> int:
    (phoff,) = struct.unpack_from("<I", path.read_bytes(), 28)
    return phoff + index * PHDR_SIZE


def phdr64_offset(path: Path, index: int) -> int:
    (phoff,) = struct.unpack_from("<Q", path.read_bytes(), E_PHOFF64)
    return phoff + index * PHDR64_SIZE


# ---- what a good image yields ------------------------------------------------------------

@pytest.mark.parametrize("which", KERNELS)
def test_segments_match_readelf(request, which):
    kernel = request.getfixturevalue(which)
    image = load_elf(kernel)
    listing, _ = tool_output("readelf", "-lW", str(kernel))
    expected = [(int(o, 16), int(v, 16), int(p, 16), int(f, 16), int(m, 16), (r, w, e))
                for o, v, p, f, m, r, w, e in READELF_LOAD.findall(listing)]
    got = [(s.offset, s.vaddr, s.paddr, s.filesz, s.memsz,
            ("R" if s.readable else "", "W" if s.writable else "", "E" if s.executable else ""))
           for s in image.segments]
    assert got == expected
    assert image.bits == (64 if which.endswith("64") else 32)


@pytest.mark.parametrize("which", KERNELS)
def test_class_machine_and_entry_match_readelf(request, which):
    kernel = request.getfixturevalue(which)
    image = load_elf(kernel)
    header, _ = tool_output("readelf", "-hW", str(kernel))
    assert image.bits == READELF_CLASS[re.search(r"Class:\s+(\w+)", header).group(1)]
    assert image.machine == READELF_MACHINE[re.search(r"Machine:\s+(.+)$", header,
                                                      re.M).group(1).strip()]
    assert image.entry == int(re.search(r"Entry point address:\s+(0x\w+)", header).group(1),
                              16)


@pytest.mark.parametrize("which", AT_1_MIB)
def test_sections_match_readelf(request, which):
    kernel = request.getfixturevalue(which)
    image = load_elf(kernel)
    listing, _ = tool_output("readelf", "-SW", str(kernel))
    names = re.findall(r"^\s+\[\s*\d+\]\s+(\S+)\s+[A-Z_]+\s", listing, re.M)
    assert [s.name for s in image.sections if s.name] == names
    text = next(s for s in image.sections if s.name == ".text")
    assert text.type == "progbits" and text.executable and text.addr == 0x100000
    bss = next(s for s in image.sections if s.name == ".bss")
    assert bss.type == "nobits" and not bss.executable


@pytest.mark.parametrize("which", AT_1_MIB)
def test_symbols_have_kinds_sizes_and_addresses(request, which):
    image = load_elf(request.getfixturevalue(which))
    start, counter = image.find_symbol("_start"), image.find_symbol("counter")
    assert image.entry == start.value
    assert (start.kind, start.binding) == ("func", "global")
    assert (counter.kind, counter.size) == ("object", 4)
    assert image.find_symbol("hook_call").kind == "notype"
    names = [s.name for s in image.function_symbols()]
    assert names == ["_start", "kmain", "hook"]  # sorted by address


@pytest.mark.parametrize("which", AT_1_MIB)
def test_symbol_at_finds_the_covering_symbol(request, which):
    image = load_elf(request.getfixturevalue(which))
    kmain = image.find_symbol("kmain")
    assert image.symbol_at(kmain.value) == kmain
    assert image.symbol_at(kmain.value + kmain.size - 1) == kmain
    # hook_call is a size-0 label inside _start: the closest symbol on it, _start after.
    hook_call = image.find_symbol("hook_call")
    assert image.symbol_at(hook_call.value) == hook_call
    assert image.symbol_at(hook_call.value + 1).name == "_start"
    assert image.symbol_at(0x10) is None


@pytest.mark.parametrize("which", AT_1_MIB)
def test_read_virtual_gives_file_bytes_then_zeros(request, which):
    image = load_elf(request.getfixturevalue(which))
    text = next(s for s in image.sections if s.name == ".text")
    assert image.read_virtual(text.addr, text.size) == \
        image.data[text.offset:text.offset + text.size]
    counter = image.find_symbol("counter")
    assert image.read_virtual(counter.value, 4) == struct.pack("<I", 42)
    stack = image.find_symbol("stack")
    assert image.read_virtual(stack.value, stack.size) == bytes(stack.size)
    assert image.read_virtual(0x100000, 0) == b""


@pytest.mark.parametrize("which", AT_1_MIB)
def test_read_virtual_refuses_unmapped_addresses(request, which):
    image = load_elf(request.getfixturevalue(which))
    with pytest.raises(ImageError, match="not mapped"):
        image.read_virtual(0x0, 4)
    with pytest.raises(ImageError, match="not mapped"):  # runs off the end of the image
        image.read_virtual(image.end_vaddr - 2, 4)


@pytest.mark.parametrize("which", AT_1_MIB)
def test_file_offset_is_none_for_bss_and_holes(request, which):
    image = load_elf(request.getfixturevalue(which))
    assert image.file_offset(0x100000) == 0x1000
    assert image.file_offset(image.find_symbol("counter").value) == 0x2000
    assert image.file_offset(image.find_symbol("stack").value) is None
    assert image.file_offset(0x50000) is None


@pytest.mark.parametrize("which", AT_1_MIB)
def test_executable_regions_are_the_code_segment(request, which):
    image = load_elf(request.getfixturevalue(which))
    (vaddr, code), = image.executable_regions()
    text = next(s for s in image.sections if s.name == ".text")
    assert vaddr == text.addr
    assert code == image.data[text.offset:text.offset + text.size]


@pytest.mark.parametrize("which", AT_1_MIB)
def test_end_vaddr_is_the_end_of_bss(request, which):
    image = load_elf(request.getfixturevalue(which))
    stack = image.find_symbol("stack")
    assert image.end_vaddr == stack.value + stack.size


@pytest.mark.parametrize("which, base", [("higher_half_kernel", 0xC0000000),
                                         ("higher_half_kernel64", 0xFFFFFFFF80000000)])
def test_higher_half_kernel_translates_through_paddr(request, which, base):
    image = load_elf(request.getfixturevalue(which))
    assert image.entry >= base + 0x100000
    assert image.virt_to_phys(image.entry) == image.entry - base
    assert image.phys_offset == base
    with pytest.raises(ImageError, match="not mapped"):
        image.virt_to_phys(0x100000)


@pytest.mark.parametrize("bits", [32, 64])
def test_notes_are_read_once_from_segment_and_section(tmp_path, bits):
    kernel = build_kernel(tmp_path, ld_args=("--build-id=sha1",), bits=bits)
    listing, _ = tool_output("readelf", "-n", str(kernel))
    build_id = bytes.fromhex(re.search(r"Build ID: (\w+)", listing).group(1))
    image = load_elf(kernel)
    assert [(n.name, n.type, n.desc) for n in image.notes] == [(b"GNU", 3, build_id)]


def test_an_elf64_from_gnu_ld_loads_as_x86_64(tmp_path):
    path = build_elf64(tmp_path)
    image = load_elf(path)
    listing, _ = tool_output("readelf", "-hn", str(path))
    build_id = bytes.fromhex(re.search(r"Build ID: (\w+)", listing).group(1))
    assert (image.bits, image.machine) == (64, 62)
    assert image.entry == int(re.search(r"Entry point address:\s+(0x\w+)", listing).group(1), 16)
    assert (b"GNU", 3, build_id) in [(n.name, n.type, n.desc) for n in image.notes]
    assert image.find_symbol("_start").value == image.entry


# A note whose section is 8-byte aligned, as .note.gnu.property is in an ELF64: its name
# and descriptor are padded to 8 bytes, not 4 (readelf reads it so).
WIDE_NOTE = """
    .pushsection .note.wide, "a", @note
    .balign 8
    .long 4, 8, 0x4e4f5445
    .asciz "Xen"
    .balign 8
    .quad 0x1122334455667788
    .popsection
"""


def test_notes_of_an_8_byte_aligned_section_are_padded_to_8(tmp_path):
    kernel = build_kernel(tmp_path, KERNEL64_ASM + WIDE_NOTE, bits=64)
    listing, _ = tool_output("readelf", "-SnW", str(kernel))
    assert re.search(r"\.note\.wide\s+NOTE\s.* 8$", listing, re.M)  # sh_addralign 8
    desc = bytes.fromhex(re.search(r"description data: ([0-9a-f ]+)", listing)
                         .group(1).replace(" ", ""))
    assert [(n.name, n.type, n.desc) for n in load_elf(kernel).notes] == \
        [(b"Xen", 0x4E4F5445, desc)]
    assert desc == struct.pack("<Q", 0x1122334455667788)


def test_image_is_frozen(kernel):
    image = load_elf(kernel)
    with pytest.raises(AttributeError):
        image.entry = 0  # type: ignore[misc]
    assert isinstance(image, ElfImage)


# ---- what a bad input gets -----------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "nope.elf"
    with pytest.raises(InputMissingError) as err:
        load_elf(path)
    assert err.value.message == f"{path}: no such file"
    assert err.value.exit_status == 66


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(InputMissingError, match="is a directory"):
        load_elf(tmp_path)


def test_unreadable_file(kernel, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)  # chmod 0 does not stop root
    with pytest.raises(InputMissingError, match="permission denied"):
        load_elf(kernel)


def expect_image_error(path: Path, pattern: str) -> ImageError:
    with pytest.raises(ImageError, match=pattern) as err:
        load_elf(path)
    assert type(err.value) is ImageError, "damage is ImageError, not UnsupportedImageError"
    assert err.value.exit_status == 65
    assert str(path) in err.value.message and "\n" not in err.value.message
    return err.value


def test_file_too_large_for_a_kernel(kernel, monkeypatch):
    monkeypatch.setattr(elf, "MAX_IMAGE_SIZE", 4096)
    expect_image_error(kernel, "larger than")


def test_empty_file(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    expect_image_error(tmp_path / "empty", "empty file")


def test_random_bytes(tmp_path):
    (tmp_path / "noise").write_bytes(bytes(range(256)) * 16)
    expect_image_error(tmp_path / "noise", "not an ELF file")


@pytest.mark.parametrize("keep", [4, 5, 30, 51])
def test_truncated_elf_header(kernel, keep):
    kernel.write_bytes(kernel.read_bytes()[:keep])
    expect_image_error(kernel, "truncated ELF header")


def test_truncated_program_header_table(kernel):
    kernel.write_bytes(kernel.read_bytes()[:60])
    expect_image_error(kernel, "program header table runs past the end")


@pytest.mark.parametrize("which", AT_1_MIB)
def test_every_truncation_is_an_image_error(request, which):
    kernel = request.getfixturevalue(which)
    data = kernel.read_bytes()
    for keep in range(1, len(data), 61):
        kernel.write_bytes(data[:keep])
        with pytest.raises(ImageError):
            load_elf(kernel)


def test_segment_past_end_of_file(kernel):
    poke(kernel, phdr_offset(kernel, 1) + P_FILESZ, "<I", 0x100000)
    poke(kernel, phdr_offset(kernel, 1) + P_MEMSZ, "<I", 0x100000)
    error = expect_image_error(kernel, "past the end of the file")
    assert "segment 1 (LOAD at 0x101000)" in error.message


def test_segment_with_more_file_than_memory_bytes(kernel):
    poke(kernel, phdr_offset(kernel, 0) + P_MEMSZ, "<I", 1)
    expect_image_error(kernel, "more file bytes")


def test_segments_claiming_absurd_memory(kernel):
    poke(kernel, phdr_offset(kernel, 1) + P_MEMSZ, "<I", 0x7FFFF000)
    expect_image_error(kernel, "more than any guest kernel")


def test_segment_wrapping_past_4_gib(kernel):
    poke(kernel, phdr_offset(kernel, 1) + P_MEMSZ, "<I", 0xFFFFF000)
    expect_image_error(kernel, "past 4 GiB")


def test_truncated_elf64_header(kernel64):
    kernel64.write_bytes(kernel64.read_bytes()[:40])
    expect_image_error(kernel64, r"truncated ELF header \(40 of 64 bytes\)")


def test_elf64_segment_past_end_of_file(kernel64):
    poke(kernel64, phdr64_offset(kernel64, 1) + P_FILESZ64, "<QQ", 0x100000, 0x100000)
    error = expect_image_error(kernel64, "past the end of the file")
    assert "segment 1 (LOAD at 0x101000)" in error.message


def test_elf64_segment_wrapping_past_16_eib(higher_half_kernel64):
    poke(higher_half_kernel64, phdr64_offset(higher_half_kernel64, 1) + P_MEMSZ64, "<Q",
         0x80000000)
    expect_image_error(higher_half_kernel64, "runs past 16 EiB")


def test_elf64_segments_above_4_gib_are_loaded(higher_half_kernel64):
    image = load_elf(higher_half_kernel64)
    greeting = image.find_symbol("greeting").value
    assert greeting > 1 << 32 and image.read_virtual(greeting, 1) == b"A"


def test_overlapping_segments(kernel):
    poke(kernel, phdr_offset(kernel, 1) + P_VADDR, "<I", 0x100010)
    expect_image_error(kernel, "overlap")


def test_section_table_past_end_of_file(kernel):
    data = kernel.read_bytes()
    (shoff,) = struct.unpack_from("<I", data, 32)
    kernel.write_bytes(data[:shoff + 10])
    expect_image_error(kernel, "section header table runs past the end")


def test_an_elf64_from_gnu_ld_is_unsupported(tmp_path):
    """Refused by the commands that cannot take it yet (require_32bit), no longer by
    the loader."""
    with pytest.raises(UnsupportedImageError) as err:
        require_32bit(load_elf(build_elf64(tmp_path)))
    assert "64-bit ELF (x86-64); only 32-bit x86 images are supported" in err.value.message
    assert err.value.exit_status == 69


def test_require_32bit_refuses_in_the_loader_s_words(kernel64):
    with pytest.raises(UnsupportedImageError) as err:
        require_32bit(load_elf(kernel64))
    assert err.value.message == \
        f"{kernel64}: 64-bit ELF (x86-64); only 32-bit x86 images are supported"


def test_require_32bit_passes_a_32_bit_image(kernel):
    image = load_elf(kernel)
    assert require_32bit(image) is image


@pytest.mark.parametrize("class_byte, machine, words", [
    (2, 183, "64-bit ELF (AArch64)"),  # ELF64 for another machine
    (2, 3, "64-bit ELF (x86)"),  # EM_386 in an ELF64
    (1, 62, "32-bit ELF for x86-64"),  # EM_X86_64 in an ELF32 (the x32 ABI)
])
def test_a_class_and_machine_pvtool_does_not_read_is_refused_at_load(kernel, class_byte,
                                                                      machine, words):
    poke(kernel, 4, "B", class_byte)
    poke(kernel, E_MACHINE, "<H", machine)
    with pytest.raises(UnsupportedImageError) as err:
        load_elf(kernel)
    assert err.value.message == f"{kernel}: {words}; only 32-bit x86 images are supported"
    assert err.value.exit_status == 69


def test_elf64_for_another_machine_is_refused_at_load(kernel64):
    poke(kernel64, E_MACHINE, "<H", 183)  # EM_AARCH64
    with pytest.raises(UnsupportedImageError, match=r"64-bit ELF \(AArch64\); only 32-bit"):
        load_elf(kernel64)


def test_other_machine_is_unsupported(kernel):
    poke(kernel, E_MACHINE, "<H", 40)  # EM_ARM
    with pytest.raises(UnsupportedImageError, match="32-bit ELF for ARM"):
        load_elf(kernel)


def test_big_endian_is_unsupported(kernel):
    poke(kernel, 5, "B", 2)  # EI_DATA = ELFDATA2MSB
    with pytest.raises(UnsupportedImageError, match="big-endian"):
        load_elf(kernel)


def test_relocatable_object_is_unsupported(tmp_path):
    obj = assemble(tmp_path, "nop\n")
    with pytest.raises(UnsupportedImageError, match="not a linked executable"):
        load_elf(obj)


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.one_of(st.integers(0, 0xFF), st.integers(0x2000, 0x2300)),
                                st.integers(0, 255)), min_size=1, max_size=8))
def test_damaged_images_only_raise_image_errors(fuzz_kernel, tmp_path_factory, edits):
    """No parser exception escapes: any damage to the headers, tables, symbols or names
    is a PvtoolError, or the image loads and is usable."""
    data = bytearray(fuzz_kernel.read_bytes())
    for offset, value in edits:
        if offset < len(data):
            data[offset] = value
    path = tmp_path_factory.mktemp("fuzz") / "damaged.elf"
    path.write_bytes(bytes(data))
    try:
        image = load_elf(path)
    except PvtoolError:
        return
    for seg in image.segments:  # what loaded must be usable
        image.read_virtual(seg.vaddr, min(seg.memsz, 1 << 20))


@pytest.fixture(scope="module", params=[32, 64], ids=["elf32", "elf64"])
def fuzz_kernel(request, tmp_path_factory) -> Path:
    """Either kernel: its headers and program headers lie in the first 0x100 bytes, its
    data, symbols, names and section headers from 0x2000."""
    return build_kernel(tmp_path_factory.mktemp("fuzz-kernel"), bits=request.param)
