"""Which bytes may be code: the section headers decide, else the executable segments;
the Multiboot header and notes are data; a physical entry is translated. Judged on an
image shaped like Debian's vmlinux (linked at 0xc0100000, entered at its physical
address, .rodata in the executable segment, .init.text an AX section in the writable
one), built by GNU as and ld and read back by readelf."""

import pytest

from pvtool.image.elf import load_elf
from pvtool.patch.code_space import code_regions, data_in_code, data_regions, entry_address
from pvtool.patch.pipeline import discover_code
from tests.binutils import build
from tests.patch.tools import sections, without_section_headers

SOURCE = """
.section .multiboot, "a"
.p2align 2
    .long 0x1BADB002, 3, -(0x1BADB002 + 3)   # checksum 0xe4524ffb: 0xfb is sti
.section .note.pvtest, "a", @note
    .long 4, 4, 1
    .ascii "pvt\\0"
    .byte 0xfa, 0xfb, 0xf4, 0xcf
.text
.globl _start
_start:
    call init
    mov eax, [message]
    ret
.section .rodata, "a"
message:
    .ascii "lmno insb outsb"
.section .init.text, "ax"
init:
    cli
    ret
.data
    .long 0
"""

SCRIPT = """
ENTRY(_start_phys)
PHDRS
{
  code PT_LOAD FLAGS(5);  /* R E, as vmlinux's */
  data PT_LOAD FLAGS(6);  /* RW, though .init.text is AX */
  notes PT_NOTE;
}
SECTIONS
{
  . = 0xc0100000;
  .text : AT(0x100000) { *(.multiboot) *(.text) } :code
  .note.pvtest : { *(.note.pvtest) } :code :notes
  .rodata : { *(.rodata) } :code
  .data ALIGN(0x1000) : AT(ADDR(.data) - 0xc0000000) { *(.data) } :data
  .init.text : { *(.init.text) } :data
  _start_phys = _start - 0xc0000000;
}
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    program = build(tmp_path_factory.mktemp("space"), ".intel_syntax noprefix\n" + SOURCE,
                    script=SCRIPT)
    return load_elf(program.elf), program.symbols, sections(program.elf)


def test_the_executable_sections_are_the_code(image):
    elf, _, found = image
    regions = {address: len(data) for address, data in code_regions(elf)}
    assert regions == {found[".text"].address: found[".text"].size,
                       found[".init.text"].address: found[".init.text"].size}


def test_rodata_in_the_executable_segment_is_data(image):
    elf, _, found = image
    assert (found[".rodata"].address, found[".rodata"].size) in {
        (address, len(data)) for address, data in data_regions(elf)}


def test_the_multiboot_header_and_the_notes_are_data(image):
    elf, symbols, found = image
    spans = {(d.start, d.end - d.start) for d in data_in_code(elf)}
    note = found[".note.pvtest"]
    assert (found[".text"].address, 12) in spans
    assert (note.address, note.size) in spans


def test_a_physical_entry_is_the_code_at_its_link_address(image):
    elf, symbols, _ = image
    assert elf.entry == symbols["_start"] - 0xc0000000
    assert entry_address(elf) == symbols["_start"]


def test_discovery_reaches_init_text_and_leaves_data_alone(image):
    elf, symbols, found = image
    code = discover_code(elf)
    assert code.reached_by_recursion(symbols["_start"])
    assert code.reached_by_recursion(symbols["init"])  # an AX section in a RW segment
    header, note = found[".text"].address, found[".note.pvtest"]
    assert not code.instructions_in(header, header + 12)
    assert not code.instructions_in(note.address, note.address + note.size)
    assert not code.instructions_in(found[".rodata"].address,
                                    found[".rodata"].address + found[".rodata"].size)
    c = code.coverage
    assert c.data == 12  # the note is a section of its own, not code
    assert c.total == found[".text"].size + found[".init.text"].size


def test_without_section_headers_the_executable_segment_is_the_code(image, tmp_path):
    elf, symbols, found = image
    bare = load_elf(without_section_headers(elf.path, tmp_path / "bare.elf"))
    code_segment = next(s for s in bare.segments if s.executable)
    assert code_regions(bare) == [(code_segment.vaddr, bare.read_virtual(
        code_segment.vaddr, code_segment.filesz))]
    code = discover_code(bare)
    note, rodata = found[".note.pvtest"], found[".rodata"]
    assert code.coverage.data == 12 + note.size  # the header, and the PT_NOTE's bytes
    assert not code.instructions_in(note.address, note.address + note.size)
    assert not code.reached_by_recursion(symbols["init"])  # not in an executable segment
    swept = code.instructions_in(rodata.address, rodata.address + rodata.size)
    assert swept and not any(code.reached_by_recursion(i.address) for i in swept)
    assert (rodata.address, rodata.address + rodata.size) in code.possible_code()
