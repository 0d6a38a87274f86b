"""Xen ELF notes: the bytes build_xen_notes makes, notes a toolchain makes the way
Linux's ELFNOTE() macro does, and the round trip through the writer."""

import io
import struct

import pytest
from elftools.elf.elffile import ELFFile

from pvtool.abi.xen import XEN_NOTE_NAME, ElfNote
from pvtool.errors import ImageError
from pvtool.image.elf import load_elf
from pvtool.image.elf_format import ELF32, ELF64
from pvtool.image.writer import write_patched_elf
from pvtool.image.xen_notes import build_xen_notes, parse_xen_notes
from tests.hv.xenguest import NOTE
from tests.image.elfs import KERNELS, build_kernel, tool_output

# Linux's include/linux/elfnote.h, ELFNOTE(Xen, type, desc), spelled out.
ELFNOTE = '    .pushsection .note.Xen, "a", @note\n' + NOTE + "    .popsection\n"


def kernel_with_notes(tmp_path, *notes: tuple[int, str], bits: int = 32):
    asm = KERNELS[bits] + "".join(ELFNOTE.format(type=t, desc=d) for t, d in notes)
    return build_kernel(tmp_path, asm, bits=bits)


def test_one_numeric_note_is_laid_out_as_the_gabi_says():
    blob = build_xen_notes([(ElfNote.hypercall_page, 0x105000)])
    assert blob == struct.pack("<3I", 4, 4, 2) + b"Xen\0" + struct.pack("<I", 0x105000)


def test_string_notes_are_nul_terminated_and_padded():
    blob = build_xen_notes([(ElfNote.guest_os, "linux")])
    assert blob == struct.pack("<3I", 4, 6, 6) + b"Xen\0" + b"linux\0\0\0"
    assert len(build_xen_notes([(ElfNote.loader, b"gen")])) == 12 + 4 + 4


def test_note_values_must_fit():
    with pytest.raises(ValueError, match="32 bits"):
        build_xen_notes([(ElfNote.entry, 1 << 32)])
    with pytest.raises(ValueError):
        build_xen_notes([(ElfNote.guest_os, "l\u00efnux")])


def test_numeric_notes_of_an_elf64_are_8_bytes():
    assert build_xen_notes([(ElfNote.entry, 1 << 32)], ELF64) == \
        struct.pack("<3I", 4, 8, 1) + b"Xen\0" + struct.pack("<Q", 1 << 32)
    with pytest.raises(ValueError, match="64 bits"):
        build_xen_notes([(ElfNote.entry, 1 << 64)], ELF64)


# _ASM_PTR, with which Linux's xen-head.S writes its address notes, in each class.
ASM_PTR = {32: ".long", 64: ".quad"}


@pytest.mark.parametrize("elf_class", [ELF32, ELF64], ids=["elf32", "elf64"])
def test_built_notes_are_the_bytes_gnu_as_makes_of_linux_s_notes(tmp_path, elf_class):
    virt_base = 0xFFFFFFFF80000000 if elf_class is ELF64 else 0xC0000000
    word = ASM_PTR[elf_class.bits]
    path = kernel_with_notes(tmp_path, (ElfNote.guest_os, '.asciz "linux"'),
                             (ElfNote.virt_base, f"{word} {virt_base:#x}"),
                             (ElfNote.entry, f"{word} 0x105000"), bits=elf_class.bits)
    assembled = ELFFile(io.BytesIO(path.read_bytes())).get_section_by_name(".note.Xen").data()
    assert build_xen_notes([(ElfNote.guest_os, "linux"), (ElfNote.virt_base, virt_base),
                            (ElfNote.entry, 0x105000)], elf_class) == assembled
    notes = parse_xen_notes(load_elf(path))
    assert (notes.virt_base, notes.entry) == (virt_base, 0x105000)


def test_notes_from_the_toolchain_are_parsed(tmp_path):
    path = kernel_with_notes(
        tmp_path,
        (ElfNote.guest_os, '.asciz "linux"'),
        (ElfNote.xen_version, '.asciz "xen-3.0"'),
        (ElfNote.virt_base, ".long 0xC0000000, 0"),  # an 8-byte numeric note
        (ElfNote.hypercall_page, ".long hook"),
        (ElfNote.pae_mode, '.asciz "yes"'),
        (ElfNote.features, '.asciz "!writable_page_tables|pae_pgdir_above_4gb"'))
    listing, _ = tool_output("readelf", "-n", str(path))
    assert listing.count("Xen ") == 6  # the oracle sees the same six notes
    image = load_elf(path)
    notes = parse_xen_notes(image)
    assert notes.guest_os == "linux" and notes.xen_version == "xen-3.0"
    assert notes.virt_base == 0xC0000000
    assert notes.hypercall_page == image.find_symbol("hook").value
    assert notes.pae_mode == "yes"
    assert notes.features == {"writable_page_tables", "pae_pgdir_above_4gb"}
    assert notes.required_features == {"writable_page_tables"}


def test_absent_notes_take_libelf_s_defaults(tmp_path):
    image = load_elf(kernel_with_notes(tmp_path, (ElfNote.guest_os, '.asciz "minios"')))
    notes = parse_xen_notes(image)
    assert notes.entry == image.entry  # no ENTRY note: e_entry
    assert notes.virt_base == 0 and notes.paddr_offset == 0
    assert notes.hypercall_page is None and notes.loader is None
    assert notes.features == frozenset() == notes.required_features
    assert set(notes.raw) == {ElfNote.guest_os}


def test_unknown_note_types_are_kept_raw(tmp_path):
    image = load_elf(kernel_with_notes(tmp_path, (17, ".long 5"), (ElfNote.loader,
                                                                   '.asciz "generic"')))
    notes = parse_xen_notes(image)
    assert notes.raw[17] == struct.pack("<I", 5) and notes.loader == "generic"


def test_image_without_xen_notes_is_none(tmp_path):
    path = build_kernel(tmp_path, ld_args=("--build-id=sha1",))
    image = load_elf(path)
    assert image.notes and parse_xen_notes(image) is None


def test_numeric_note_of_odd_size_is_an_image_error(tmp_path):
    image = load_elf(kernel_with_notes(tmp_path, (ElfNote.entry, ".byte 1, 2, 3")))
    with pytest.raises(ImageError, match="3-byte value"):
        parse_xen_notes(image)


def test_round_trip_through_the_writer(kernel, tmp_path):
    image = load_elf(kernel)
    kmain = image.find_symbol("kmain").value
    blob = build_xen_notes([
        (ElfNote.guest_os, "pvtool-guest"), (ElfNote.guest_version, "0.1"),
        (ElfNote.xen_version, "xen-3.0"), (ElfNote.loader, "generic"),
        (ElfNote.entry, kmain), (ElfNote.hypercall_page, 0x105000),
        (ElfNote.virt_base, 0), (ElfNote.paddr_offset, 0), (ElfNote.pae_mode, "yes"),
        (ElfNote.features, "!writable_page_tables|auto_translated_physmap"),
    ])
    out = tmp_path / "notes.elf"
    write_patched_elf(image, out, patches={}, added=[], notes=blob)
    notes = parse_xen_notes(load_elf(out))
    assert (notes.guest_os, notes.guest_version, notes.xen_version, notes.loader) == \
        ("pvtool-guest", "0.1", "xen-3.0", "generic")
    assert (notes.entry, notes.hypercall_page, notes.virt_base, notes.paddr_offset) == \
        (kmain, 0x105000, 0, 0)
    assert notes.pae_mode == "yes"
    assert notes.required_features == {"writable_page_tables"}
    assert notes.features == {"writable_page_tables", "auto_translated_physmap"}
    assert all(name == XEN_NOTE_NAME for name in [n.name for n in load_elf(out).notes])
