"""XEN_ELFNOTE_BSD_SYMTAB "yes": the builder loads the kernel's symbol table after its
last byte in libelf's layout (xen/common/libelf/libelf-loader.c, elf_load_bsdsyms) and
the boot structures move past it. The loaded block is read back as an ELF file by
pyelftools and its symbols compared with GNU nm's list for the kernel file."""

import io
import struct
import subprocess

import pytest
from elftools.elf.elffile import ELFFile

from pvtool.hv.builder import plan_layout
from pvtool.image.bsd_symtab import HEADER_SIZE
from pvtool.machine.cpu import ESI
from tests.hv.harness import boot
from tests.hv.xenguest import DEFAULT_NOTES

PAGE = 4096
BSD_SYMTAB = 11  # public/elfnote.h
SI_MFN_LIST = 68
ELF_HEADER_AT = 4  # after the u32 size


def nm_symbols(path) -> dict[str, int]:
    """GNU nm's defined symbols: name -> value."""
    out = subprocess.run(["nm", "--defined-only", str(path)], capture_output=True,
                         text=True, check=True).stdout
    return {name: int(value, 16) for value, _, name in (line.split() for line in out.splitlines())}


@pytest.fixture(scope="module")
def kernel(build):
    return build("", notes=(*DEFAULT_NOTES, (BSD_SYMTAB, '.asciz "yes"')),
                 data="marker: .long 0x5eb0")


@pytest.fixture(scope="module")
def booted(kernel):
    return boot(kernel)


def loaded_block(booted, kernel) -> bytes:
    at = kernel["stack_top"] + 3 & ~3  # the kernel's end, rounded to its word
    size = struct.unpack("<I", booted.memory.read_phys(at, 4))[0]
    return booted.memory.read_phys(at + ELF_HEADER_AT, size)


def test_the_symbol_table_follows_the_kernel_and_reads_as_an_elf_file(booted, kernel):
    elf = ELFFile(io.BytesIO(loaded_block(booted, kernel)))
    assert elf.num_segments() == 0
    assert [s["sh_type"] for s in elf.iter_sections()] == ["SHT_NULL", "SHT_SYMTAB",
                                                          "SHT_STRTAB"]
    assert elf.get_section(1)["sh_link"] == 2
    symbols = {s.name: s["st_value"] for s in elf.get_section(1).iter_symbols()
               if s.name and s["st_shndx"] != "SHN_UNDEF"
               and s["st_info"]["type"] != "STT_FILE"}  # nm lists no file symbols
    assert symbols == nm_symbols(kernel.path)


def test_the_size_field_counts_from_the_elf_header_to_the_strings_end(booted, kernel):
    at = kernel["stack_top"] + 3 & ~3
    elf = ELFFile(io.BytesIO(loaded_block(booted, kernel)))
    strtab = elf.get_section(2)
    size = struct.unpack("<I", booted.memory.read_phys(at, 4))[0]
    assert size == strtab["sh_offset"] + strtab["sh_size"]
    assert elf.get_section(1)["sh_offset"] == HEADER_SIZE - ELF_HEADER_AT


def test_the_boot_structures_move_past_the_symbol_table(booted, kernel):
    info = booted.memory.read_phys(booted.cpu.read(ESI), 72)
    p2m = struct.unpack_from("<I", info, SI_MFN_LIST)[0]
    at = kernel["stack_top"] + 3 & ~3
    size = struct.unpack("<I", booted.memory.read_phys(at, 4))[0]
    assert p2m >= at + ELF_HEADER_AT + size
    assert p2m == plan_layout(0, at + ELF_HEADER_AT + size + 3 & ~3, 1).p2m


def test_without_the_note_nothing_is_loaded_after_the_kernel(build):
    plain = build("", data="marker: .long 0x5eb0")
    booted = boot(plain)
    info = booted.memory.read_phys(booted.cpu.read(ESI), 72)
    assert struct.unpack_from("<I", info, SI_MFN_LIST)[0] == -(-plain["stack_top"] // PAGE) * PAGE
    assert booted.memory.read_phys(plain["stack_top"], 4) == bytes(4)
