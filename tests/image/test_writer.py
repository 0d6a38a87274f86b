"""write_patched_elf: the output read back by load_elf, pyelftools, readelf and objdump,
booted by QEMU, and the promises it keeps when it cannot write. The output's readers
see an ELF32 and an ELF64 (an x86-64 kernel linked in the top 2 GiB) alike."""

import hashlib
import io
import os
import re
import struct
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pvtool.abi.xen import ElfNote
from pvtool.errors import OutputError, PatchError
from pvtool.image import elf_format, writer
from pvtool.image.elf import load_elf
from pvtool.image.multiboot import find_header
from pvtool.image.writer import AddedSection, write_patched_elf
from pvtool.image.xen_notes import build_xen_notes, parse_xen_notes
from tests.image.elfs import HIGHER_HALF64_LD, build_kernel, poke, tool_output
from tests.oracles import run_qemu

# mov $0x3f8,%dx; mov $'P',%al; out %al,%dx; mov $'V',%al; out %al,%dx; ret
# (the same bytes in 32- and 64-bit code)
PV_CODE = bytes.fromhex("66baf803" "b050" "ee" "b056" "ee" "c3")
PV_TEXT = 0x105000
PV_BSS = 0x106000
RX = elf_format.PF_R | elf_format.PF_X
RW = elf_format.PF_R | elf_format.PF_W
# Where each width's kernel in `patched` is linked above where it is loaded (1 MiB).
LINK_OFFSET = {32: 0, 64: 0xFFFFFFFF80000000}


def pv_text(vaddr: int = PV_TEXT) -> AddedSection:
    return AddedSection(".pvtext", vaddr, PV_CODE, 0x1000, RX)


def call_to(source: int, target: int) -> bytes:
    """call rel32 at source to target."""
    return b"\xe8" + struct.pack("<i", target - (source + 5))


def redirect_hook(image, target: int = PV_TEXT) -> dict[int, bytes]:
    """Patches: hook_call calls target instead of hook, and greeting says 'B'."""
    hook_call = image.find_symbol("hook_call").value
    return {hook_call: call_to(hook_call, target), image.find_symbol("greeting").value: b"B"}


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(params=[32, 64], ids=["elf32", "elf64"])
def patched(request, tmp_path):
    """The kernel of one width with hook redirected into .pvtext, a bss-only section and
    Xen notes: (the original image, the output's path)."""
    bits = request.param
    kernel = (request.getfixturevalue("kernel") if bits == 32 else
              build_kernel(tmp_path, bits=64, script=HIGHER_HALF64_LD, name="kernel64"))
    image = load_elf(kernel)
    base = LINK_OFFSET[bits]
    notes = build_xen_notes([(ElfNote.guest_os, "pvtool"), (ElfNote.entry, image.entry)],
                            image.elf_class)
    added = [pv_text(base + PV_TEXT), AddedSection(".pvbss", base + PV_BSS, b"", 0x2000, RW)]
    out = tmp_path / "kernel.pv.elf"
    write_patched_elf(image, out, patches=redirect_hook(image, base + PV_TEXT), added=added,
                      notes=notes)
    return image, out


# ---- the output, as four independent readers see it -------------------------------------

def test_output_loads_with_the_new_segments_and_patches(patched):
    image, out = patched
    result = load_elf(out)
    base = LINK_OFFSET[image.bits]
    assert result.elf_class == image.elf_class
    assert result.segments[:len(image.segments)] == image.segments
    text, bss = result.segments[len(image.segments):]
    assert (text.vaddr, text.paddr, text.filesz, text.memsz, text.flags) == \
        (base + PV_TEXT, PV_TEXT, len(PV_CODE), 0x1000, RX)
    assert text.offset % 4096 == text.vaddr % 4096
    assert (bss.vaddr, bss.paddr, bss.filesz, bss.memsz, bss.writable) == \
        (base + PV_BSS, PV_BSS, 0, 0x2000, True)
    assert result.read_virtual(base + PV_TEXT, 0x1000) == PV_CODE.ljust(0x1000, b"\0")
    assert result.read_virtual(result.find_symbol("greeting").value, 1) == b"B"
    assert result.entry == image.entry and result.symbols == image.symbols
    assert parse_xen_notes(result).entry == image.entry


def test_pyelftools_reads_sections_and_note_segment(patched):
    image, out = patched
    elf = ELFFile(io.BytesIO(out.read_bytes()))
    assert (elf.elfclass, elf["e_entry"]) == (image.bits, image.entry)
    assert elf.get_section_by_name(".pvtext").data() == PV_CODE
    assert elf.get_section_by_name(".pvbss")["sh_type"] == "SHT_NOBITS"
    notes = elf.get_section_by_name(".note.Xen")
    assert (notes["sh_type"], notes["sh_addralign"]) == ("SHT_NOTE", 4)
    (note_segment,) = [s for s in elf.iter_segments() if s["p_type"] == "PT_NOTE"]
    assert note_segment["p_align"] == 4  # as GNU ld aligns a .note.Xen in either class
    assert [(n["n_name"], n["n_desc"]) for n in note_segment.iter_notes()] == [
        ("Xen", b"pvtool\0"), ("Xen", image.entry.to_bytes(image.bits // 8, "little"))]
    word = image.bits // 8  # the header tables are naturally aligned
    assert elf["e_phoff"] % word == 0 and elf["e_shoff"] % word == 0


def readelf_address(value: int, bits: int) -> str:
    """An address as readelf -W prints it in a section header: 8 or 16 digits."""
    return f"{value:0{bits // 4}x}"


def test_readelf_lists_the_new_segments_without_warnings(patched):
    image, out = patched
    base = LINK_OFFSET[image.bits]
    listing, errors = tool_output("readelf", "-lSW", str(out))
    assert errors == "" and "warning" not in listing.lower()
    loads = re.findall(r"^\s+LOAD\s+0x\w+ 0x(\w+) ", listing, re.M)
    assert [int(v, 16) for v in loads] == [s.vaddr for s in image.segments] + \
        [base + PV_TEXT, base + PV_BSS]
    assert re.search(r"^\s+NOTE\s", listing, re.M)
    text, bss = (readelf_address(base + at, image.bits) for at in (PV_TEXT, PV_BSS))
    assert re.search(rf"\.pvtext\s+PROGBITS\s+{text} \w+ {len(PV_CODE):06x} .*AX", listing)
    assert re.search(rf"\.pvbss\s+NOBITS\s+{bss} \w+ 002000 .*WA", listing)
    assert re.search(r"\.note\.Xen\s+NOTE\s", listing)
    notes, errors = tool_output("readelf", "-nW", str(out))
    assert errors == "" and notes.count("Xen ") == 2


def test_objdump_disassembles_the_added_code_and_the_patch(patched):
    image, out = patched
    pv_text_at = LINK_OFFSET[image.bits] + PV_TEXT
    code, _ = tool_output("objdump", "-d", "-j", ".pvtext", str(out))
    assert re.search(rf"{pv_text_at:x}:\s+66 ba f8 03\s+mov\s+\$0x3f8,%dx", code)
    assert re.search(rf"{pv_text_at + 10:x}:\s+c3\s+ret", code)
    text, _ = tool_output("objdump", "-d", "-j", ".text", str(out))
    hook_call = image.find_symbol("hook_call").value
    assert re.search(rf"{hook_call:x}:\s+e8 .*call\s+{pv_text_at:x}", text)


@pytest.mark.parametrize("patched", [32], indirect=True)  # QEMU's Multiboot loader: ELF32
def test_qemu_boots_the_output_and_runs_the_added_code(kernel, patched):
    _, out = patched
    assert run_qemu(kernel, timeout=30).stdout == b"A"
    result = run_qemu(out, timeout=30)
    assert (result.stdout, result.guest_code) == (b"BPV", 3)


def test_multiboot_header_stays_where_it_was(patched):
    image, out = patched
    assert find_header(load_elf(out)) == find_header(image)


def test_input_is_never_modified(kernel, tmp_path):
    before, stat = digest(kernel), kernel.stat()
    image = load_elf(kernel)
    write_patched_elf(image, tmp_path / "out.elf", patches=redirect_hook(image),
                      added=[pv_text()], notes=None)
    assert digest(kernel) == before and kernel.stat().st_mtime_ns == stat.st_mtime_ns


def test_output_keeps_the_input_s_permissions(kernel, tmp_path):
    kernel.chmod(0o750)
    write_patched_elf(load_elf(kernel), tmp_path / "out.elf", patches={}, added=[], notes=None)
    assert (tmp_path / "out.elf").stat().st_mode & 0o777 == 0o750


def test_higher_half_sections_get_physical_addresses_below(higher_half_kernel, tmp_path):
    image = load_elf(higher_half_kernel)
    out = tmp_path / "out.elf"
    write_patched_elf(image, out, patches={}, added=[pv_text(0xC0105000)], notes=None)
    added = load_elf(out).segments[-1]
    assert (added.vaddr, added.paddr) == (0xC0105000, 0x105000)


def test_section_below_the_image_keeps_loads_sorted(kernel, tmp_path):
    image = load_elf(kernel)
    out = tmp_path / "out.elf"
    write_patched_elf(image, out, patches={}, added=[pv_text(0x80000)], notes=None)
    listing, errors = tool_output("readelf", "-lW", str(out))
    loads = [int(v, 16) for v in re.findall(r"^\s+LOAD\s+0x\w+ 0x(\w+) ", listing, re.M)]
    assert loads == sorted(loads) and 0x80000 in loads and errors == ""


# Where e_shoff (and its format) and e_shnum, e_shstrndx lie in each class's header.
SECTION_TABLE_FIELDS = {32: (32, "<I", 48), 64: (40, "<Q", 60)}


@pytest.mark.parametrize("bits", [32, 64])
def test_image_without_section_headers_gets_a_section_table(tmp_path, bits):
    kernel = build_kernel(tmp_path, bits=bits)
    shoff_at, shoff_format, shnum_at = SECTION_TABLE_FIELDS[bits]
    poke(kernel, shoff_at, shoff_format, 0)
    poke(kernel, shnum_at, "<HH", 0, 0)
    image = load_elf(kernel)
    assert image.sections == ()
    out = tmp_path / "out.elf"
    write_patched_elf(image, out, patches={}, added=[pv_text()],
                      notes=build_xen_notes([(ElfNote.loader, "generic")]))
    listing, errors = tool_output("readelf", "-SW", str(out))
    assert errors == ""
    assert [s.name for s in load_elf(out).sections] == ["", ".shstrtab", ".pvtext", ".note.Xen"]


# ---- refusals, and what they leave behind -------------------------------------------------

def expect_patch_error(kernel, tmp_path, pattern, *, patches=None, added=()):
    out = tmp_path / "out.elf"
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(PatchError, match=pattern) as err:
        write_patched_elf(load_elf(kernel), out, patches=patches or {}, added=list(added),
                          notes=None)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    return err.value


def test_patch_outside_any_segment_writes_nothing(kernel, tmp_path):
    error = expect_patch_error(kernel, tmp_path, "not inside", patches={0x200000: b"\x90"})
    assert error.exit_status == 76


def test_patch_into_bss_writes_nothing(kernel, tmp_path):
    stack = load_elf(kernel).find_symbol("stack").value
    expect_patch_error(kernel, tmp_path, "not inside", patches={stack: b"\x90"})


def test_patch_running_off_its_segment_writes_nothing(kernel, tmp_path):
    expect_patch_error(kernel, tmp_path, "not inside", patches={0x100030: bytes(16)})


@pytest.mark.parametrize("bits", [32, 64])
def test_patch_over_loaded_elf_headers_writes_nothing(tmp_path, bits):
    # ld's default layout loads the ELF header and program headers in the first segment.
    kernel = build_kernel(tmp_path, script=None, ld_args=("-Ttext=0x100000",), bits=bits)
    first = load_elf(kernel).segments[0]
    assert first.offset == 0
    expect_patch_error(kernel, tmp_path, "ELF headers", patches={first.vaddr + 44: b"\1"})


def test_image_with_a_pt_phdr_segment_is_refused(kernel, tmp_path):
    (phoff,) = struct.unpack_from("<I", kernel.read_bytes(), 28)
    poke(kernel, phoff + 2 * 32, "<I", elf_format.PT_PHDR)  # the GNU_STACK entry
    expect_patch_error(kernel, tmp_path, "PT_PHDR", added=[pv_text()])


def test_overlapping_patches_write_nothing(kernel, tmp_path):
    expect_patch_error(kernel, tmp_path, "overlaps",
                       patches={0x100010: b"\x90\x90", 0x100011: b"\x90"})


def test_added_section_overlapping_the_image_writes_nothing(kernel, tmp_path):
    expect_patch_error(kernel, tmp_path, "shares pages", added=[pv_text(0x101000)])


def test_added_sections_overlapping_each_other_write_nothing(kernel, tmp_path):
    expect_patch_error(kernel, tmp_path, "shares pages",
                       added=[AddedSection(".a", 0x200000, b"", 0x2000, RW),
                              AddedSection(".b", 0x201000, b"\x90", 1, RX)])


def test_an_added_section_with_its_own_physical_address_is_loaded_there(kernel, tmp_path):
    """The glue window's layout (docs/ABI.md): linked high, loaded low; p_paddr is the
    section's own, not the image's virtual-physical offset applied to its vaddr."""
    image = load_elf(kernel)
    out = tmp_path / "kernel.pv.elf"
    added = [AddedSection(".pvtext", 0xFC802000, PV_CODE, 0x1000, RX, paddr=0xA2000),
             AddedSection(".pvdata", 0xFC800000, b"\1", 0x2000, RW, paddr=0xA0000)]
    write_patched_elf(image, out, patches={}, added=added, notes=None)
    loads = re.findall(r"^\s+LOAD\s+0x[0-9a-f]+ (0x[0-9a-f]+) (0x[0-9a-f]+) (0x[0-9a-f]+) "
                       r"(0x[0-9a-f]+)", tool_output("readelf", "-lW", str(out))[0], re.M)
    assert [tuple(int(x, 16) for x in load) for load in loads[-2:]] == [
        (0xFC800000, 0xA0000, 1, 0x2000), (0xFC802000, 0xA2000, len(PV_CODE), 0x1000)]
    assert load_elf(out).read_virtual(0xFC802000, len(PV_CODE)) == PV_CODE


@pytest.mark.parametrize("which", ["kernel", "higher_half_kernel"])
def test_an_added_section_sharing_physical_pages_with_the_image_writes_nothing(
        request, tmp_path, which):
    """Apart in virtual space, together in physical (both kernels are loaded at 1 MiB):
    the loader would put one over the other."""
    expect_patch_error(request.getfixturevalue(which), tmp_path, "shares pages", added=[
        AddedSection(".pvtext", 0xFC800000, PV_CODE, 0x1000, RX, paddr=0x100000)])


def test_added_sections_sharing_physical_pages_write_nothing(kernel, tmp_path):
    expect_patch_error(kernel, tmp_path, "shares pages", added=[
        AddedSection(".pvdata", 0xFC800000, b"", 0x2000, RW, paddr=0xA0000),
        AddedSection(".pvtext", 0xFC802000, PV_CODE, 0x1000, RX, paddr=0xA1000)])


@pytest.mark.parametrize("section, pattern", [
    (AddedSection(".pvtext", 0x105010, PV_CODE, 0x1000, RX), "not page-aligned"),
    (AddedSection(".text", 0x105000, PV_CODE, 0x1000, RX), "already has a section"),
    (AddedSection("", 0x105000, PV_CODE, 0x1000, RX), "non-empty ASCII"),
    (AddedSection(".pvtext", 0x105000, PV_CODE, 4, RX), "smaller than"),
    (AddedSection(".pvtext", 0x105000, PV_CODE, 0x1000, 8), "flags"),
    (AddedSection(".pvtext", 0xFFFFF000, PV_CODE, 0x2000, RX), "32-bit address space"),
])
def test_bad_added_sections_write_nothing(kernel, tmp_path, section, pattern):
    expect_patch_error(kernel, tmp_path, pattern, added=[section])


def test_an_elf64_takes_sections_above_4_gib_but_not_past_16_eib(kernel64, tmp_path):
    image = load_elf(kernel64)
    out = tmp_path / "high.elf"
    write_patched_elf(image, out, patches={}, notes=None, added=[
        AddedSection(".pvtext", 0xFFFF800000000000, PV_CODE, 0x1000, RX, paddr=0x105000)])
    assert load_elf(out).read_virtual(0xFFFF800000000000, len(PV_CODE)) == PV_CODE
    expect_patch_error(kernel64, tmp_path, "does not fit the 64-bit address space", added=[
        AddedSection(".pvtext", 0xFFFFFFFFFFFFF000, PV_CODE, 0x2000, RX, paddr=0x105000)])


def test_refuses_to_overwrite_the_input(kernel):
    before = digest(kernel)
    with pytest.raises(OutputError, match="refusing to overwrite the input") as err:
        write_patched_elf(load_elf(kernel), kernel, patches={}, added=[pv_text()], notes=None)
    assert err.value.exit_status == 73
    assert digest(kernel) == before and leftovers(kernel.parent) == []


def test_refuses_the_input_under_another_name(kernel, tmp_path, monkeypatch):
    image = load_elf(kernel)
    (tmp_path / "link.elf").symlink_to(kernel)
    os.link(kernel, tmp_path / "hard.elf")
    monkeypatch.chdir(tmp_path)
    for out in (Path("link.elf"), Path("hard.elf"), Path(".") / kernel.name):
        with pytest.raises(OutputError, match="refusing to overwrite"):
            write_patched_elf(image, out, patches={}, added=[pv_text()], notes=None)
    assert leftovers(tmp_path) == [] and (tmp_path / "link.elf").is_symlink()


def test_missing_output_directory(kernel, tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        write_patched_elf(load_elf(kernel), tmp_path / "no" / "out.elf", patches={},
                          added=[], notes=None)


def test_failed_rename_leaves_no_file(kernel, tmp_path, monkeypatch):
    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.os, "replace", refuse)
    with pytest.raises(OutputError, match="No space left"):
        write_patched_elf(load_elf(kernel), tmp_path / "out.elf", patches={},
                          added=[pv_text()], notes=None)
    assert not (tmp_path / "out.elf").exists() and leftovers(tmp_path) == []


def test_output_failing_verification_is_not_renamed(kernel, tmp_path, monkeypatch):
    """A short write on disk (simulated by truncating the temporary file before it is
    read back) must never become OUT; an existing OUT is left as it was."""
    real_load = writer.load_elf

    def load_truncated(path):
        path.write_bytes(path.read_bytes()[:-100])
        return real_load(path)

    out = tmp_path / "out.elf"
    out.write_bytes(b"previous output")
    monkeypatch.setattr(writer, "load_elf", load_truncated)
    with pytest.raises(PatchError, match="failed verification"):
        write_patched_elf(load_elf(kernel), out, patches={}, added=[pv_text()], notes=None)
    assert out.read_bytes() == b"previous output" and leftovers(tmp_path) == []
