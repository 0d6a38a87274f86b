"""What `pvtool patch` writes for hello: the patched ELF (read by readelf and objdump),
the listing diff (counted by Debian's diffstat), and the JSON report."""

import csv
import json
import re
import struct

import pytest

from pvtool.patch.pipeline import patch_image
from tests.cli import pvtool
from tests.oracles import guest_path, require_tool
from tests.patch.tools import (
    HC_PHYSDEV_OP,
    HOLE_BASE,
    HOLE_LIMIT,
    IDENTITY_TABLES,
    XEN_ENTRY,
    XEN_HYPERCALL_PAGE,
    Glue,
    address,
    build_kernel,
    by_address,
    glue_segments,
    hole_limit,
    identity_tables,
    notes,
    objdump,
    read_virtual,
    run,
    sections,
    segments,
    stub_ranges,
    trap_table,
)

PLACEMENTS = {"in-place", "detour", "trap", "kept"}
LISTING_LINE = re.compile(r"^([0-9a-f]{8}) <([^>]*)>: (\S+)")


@pytest.fixture(scope="module")
def hello(tmp_path_factory):
    elf = guest_path("hello")
    workdir = tmp_path_factory.mktemp("outputs")
    out = workdir / "hello.pv.elf"
    patch_image(elf, out)
    return elf, out, workdir


def entry_of(elf) -> int:
    header = run(require_tool("readelf"), "-hW", str(elf)).stdout
    return int(re.search(r"Entry point address:\s+(0x[0-9a-f]+)", header).group(1), 16)


def test_the_image_its_diff_and_its_report_are_written_and_nothing_else(hello):
    elf, out, workdir = hello
    assert sorted(p.name for p in workdir.iterdir()) == [
        "hello.pv.diff", "hello.pv.elf", "hello.pv.json"]
    assert out.read_bytes()[:4] == b"\x7fELF"
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["output"] == str(out)
    assert report["listing_diff"] == str(out.with_suffix(".diff"))
    assert report["input"] == str(elf)
    assert report["patch_set"] == "xen32"


# ---- the listing diff ----------------------------------------------------------------


def diff_lines(out) -> list[str]:
    return out.with_suffix(".diff").read_text().splitlines()


def test_the_diff_starts_with_the_baseline_size_of_the_original_listing(hello):
    elf, out, _ = hello
    lines = diff_lines(out)
    match = re.fullmatch(r"# pvtool-baseline-lines: (\d+)", lines[0])
    assert match, lines[0]
    # one line per instruction: objdump's listing of the executable code, with symbols
    # (the guest is built by gcc: no data in .text, so a linear sweep sees it all)
    assert int(match.group(1)) == len(objdump(elf, symbols=True))
    assert lines[1] == f"--- {elf}"
    assert lines[2] == f"+++ {out}"
    assert lines[3].startswith("@@ ")


MNEMONIC = {"pushfd": "pushf", "popfd": "popf", "iretd": "iret", "popal": "popa",
            "pushal": "pusha", "lidt": "lidtd", "lgdt": "lgdtd", "sgdt": "sgdtd",
            "sidt": "sidtd", "ljmp": "jmp", "lcall": "call"}
SAME = {("nop", "xchg")}  # 66 90: capstone's nop is objdump's xchg ax,ax


def same_mnemonic(capstone: str, objdump: str) -> bool:
    return MNEMONIC.get(capstone, capstone) == objdump or (capstone, objdump) in SAME


def test_every_listing_line_is_an_instruction_objdump_sees_there(hello):
    """Removed and context lines come from the input, added lines from the output."""
    elf, out, _ = hello
    before = by_address(objdump(elf))
    after = by_address(objdump(out))
    seen = {"-": 0, "+": 0, " ": 0}
    for line in diff_lines(out)[3:]:
        if line.startswith("@@"):
            continue
        sign, body = line[0], line[1:]
        match = LISTING_LINE.match(body)
        assert match, line
        at, mnemonic = int(match.group(1), 16), match.group(3)
        table = after if sign == "+" else before
        assert at in table, f"no instruction at {at:#x}: {line}"
        if mnemonic != "(bad)":
            assert same_mnemonic(mnemonic, table[at].mnemonic), line
        seen[sign] += 1
    assert all(seen.values()), seen


@pytest.fixture(scope="module")
def diffstat_tool():
    return require_tool("diffstat")


def test_debians_diffstat_counts_the_listing_diff_as_pvtool_diffstat_does(hello, diffstat_tool):
    elf, out, _ = hello
    diff = out.with_suffix(".diff")
    table = run(diffstat_tool, "-m", "-t", str(diff)).stdout.splitlines()
    assert table[0] == "INSERTED,DELETED,MODIFIED,FILENAME"
    rows = list(csv.reader(table[1:]))
    assert len(rows) == 1
    inserted, deleted, modified = map(int, rows[0][:3])
    result = pvtool("diffstat", "--json", "-", diff)
    assert result.status == 0, result.output
    totals = json.loads(result.stdout)["totals"]
    assert (totals["inserted"], totals["deleted"], totals["modified"]) == (
        inserted, deleted, modified)
    assert inserted > 0 and modified > 0


# ---- the JSON report ----------------------------------------------------------------


def test_the_report_counts_by_placement_sum_to_the_sites(hello):
    elf, out, _ = hello
    report = json.loads(out.with_suffix(".json").read_text())
    counts = report["placements"]
    assert set(counts) == PLACEMENTS
    assert sum(counts.values()) == len(report["sites"]) > 0
    for placement in PLACEMENTS:
        assert counts[placement] == sum(s["placement"] == placement for s in report["sites"])
    assert counts["trap"] == len(trap_table(out))
    assert len(report["verified"]) == 3


def test_every_reported_site_is_that_instruction_in_the_input(hello):
    elf, out, _ = hello
    report = json.loads(out.with_suffix(".json").read_text())
    before = by_address(objdump(elf))
    for site in report["sites"]:
        insn = before[address(site)]
        mnemonic = site["instruction"].split()[0]
        assert same_mnemonic(mnemonic, insn.mnemonic), site
        assert site["placement"] in PLACEMENTS
        assert (site["stub"] is not None) == (site["placement"] == "detour")
        assert site["reason"]
        assert site["found_by"] in ("recursion", "sweep")


def test_the_json_flag_prints_the_report(hello, tmp_path):
    elf, _, _ = hello
    out = tmp_path / "again.elf"
    result = pvtool("patch", elf, "-o", out, "--json", "-")
    assert result.status == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed == json.loads(out.with_suffix(".json").read_text())


# ---- the ELF structure -------------------------------------------------------------------


def test_readelf_shows_the_new_sections_each_in_its_own_load_segment(hello):
    elf, out, _ = hello
    found = sections(out)
    pvdata, pvtext = found[".pvdata"], found[".pvtext"]
    assert (pvdata.type, pvdata.flags) == ("PROGBITS", "WA")
    assert (pvtext.type, pvtext.flags) == ("PROGBITS", "AX")
    loads = {s.vaddr: s for s in segments(out) if s.type == "LOAD"}
    assert loads[pvdata.address].flags == "RW"
    assert loads[pvtext.address].flags == "RE"
    assert loads[pvtext.address].filesz == pvtext.size
    assert loads[pvdata.address].offset == pvdata.offset
    assert loads[pvtext.address].offset == pvtext.offset
    for section in (pvdata, pvtext):
        assert section.address % 4096 == 0 and section.offset % 4096 == 0
    assert sections(elf).keys() <= found.keys()


def test_the_new_segments_are_linked_in_the_glue_window_and_loaded_in_the_hole(hello):
    """docs/ABI.md, "The glue window": .pvdata at 0xFC800000 and .pvtext after it, their
    p_paddr in the low-memory hole, below the identity-map tables at its top; hello has
    no segment in the hole, so the hole reaches 1 MiB and the tables end there."""
    elf, out, _ = hello
    assert hole_limit(elf) == HOLE_LIMIT
    pvdata, pvtext = glue_segments(elf, out)
    assert pvdata.paddr == HOLE_BASE
    assert pvtext.paddr - pvdata.paddr == pvtext.vaddr - pvdata.vaddr  # one linear window
    assert pvdata.memsz > pvdata.filesz  # the GDT shadow: zero-filled, not in the file


def test_readelf_shows_a_note_segment_with_the_xen_notes(hello):
    elf, out, _ = hello
    found = sections(out)
    note_segments = [s for s in segments(out) if s.type == "NOTE"]
    assert len(note_segments) == 1
    assert note_segments[0].offset == found[".note.Xen"].offset
    assert note_segments[0].filesz == found[".note.Xen"].size
    listed = run(require_tool("readelf"), "-nW", str(out)).stdout
    owners = re.findall(r"^\s+(Xen|pvtool)\s+0x[0-9a-f]+\s", listed, re.MULTILINE)
    records = notes(out)
    assert owners == [name.decode() for name, _, _ in records]
    data = re.findall(r"description data: ([0-9a-f ]+)", listed)
    assert [bytes.fromhex(d) for d in data] == [desc for _, _, desc in records]
    xen = {kind: desc for name, kind, desc in records if name == b"Xen"}
    assert {XEN_ENTRY, XEN_HYPERCALL_PAGE} <= set(xen)
    # public/elfnote.h: GUEST_OS 6, XEN_VERSION 5, LOADER 8, PAE_MODE 9, VIRT_BASE 3
    assert xen[5] == b"xen-3.0\0" and xen[8] == b"generic\0" and xen[9] == b"no\0"
    assert xen[3] == bytes(4)  # hello is linked at its physical address
    assert not any(name == b"Xen" for name, _, _ in (notes(elf)))


def test_the_hypercall_page_note_names_the_start_of_pvtext(hello):
    elf, out, _ = hello
    page = struct.unpack("<I", dict((k, d) for n, k, d in notes(out) if n == b"Xen")[2])[0]
    assert page == sections(out)[".pvtext"].address
    entries = by_address(objdump(out, section=".pvtext", start=page, stop=page + 4096))
    for number in (0, 2, 17, 29):  # set_trap_table, set_gdt, xen_version, sched_op
        at = page + 32 * number
        assert [entries[a].text for a in (at, at + 5, at + 7)] == [
            f"mov eax,{number:#x}", "int 0x82", "ret"]
    iret = page + 32 * 23
    assert [entries[a].text for a in (iret, iret + 1, iret + 6)] == [
        "push eax", "mov eax,0x17", "int 0x82"]


def test_the_entry_note_sets_up_and_jumps_to_the_kernels_entry(hello):
    elf, out, _ = hello
    entry = struct.unpack("<I", dict((k, d) for n, k, d in notes(out) if n == b"Xen")[1])[0]
    glue = Glue(out)
    assert glue.contains(entry)
    code = glue.walk(entry)
    assert any(line.mnemonic == "jmp" and line.target == entry_of(elf) for line in code)
    assert HC_PHYSDEV_OP in glue.hypercalls(entry)
    assert any(line.text == "mov eax,0x2badb002" for line in code)  # Multiboot's magic
    assert entry_of(out) == entry_of(elf)  # a Multiboot loader still finds the kernel


def test_the_multiboot_header_is_where_it_was(hello):
    elf, out, _ = hello
    data = elf.read_bytes()
    offset = data.find(struct.pack("<I", 0x1BADB002))
    assert 0 <= offset < 8192
    assert out.read_bytes()[offset:offset + 12] == data[offset:offset + 12]
    assert read_virtual(out, 0x100000, 12) == read_virtual(elf, 0x100000, 12)


HIGHER_HALF = """
ENTRY(_start)
SECTIONS {
    . = 0xC0100000;
    .text : AT(0x100000) { *(.text) }
    .data ALIGN(4096) : AT(ADDR(.data) - 0xC0000000) { *(.data) }
}
"""


def test_a_higher_half_kernel_keeps_its_offset_and_gets_the_glue_in_the_window(tmp_path):
    """The kernel's own segments keep virtual = physical + 0xC0000000 and VIRT_BASE says
    so (Xen's libelf: a note kernel's virtual addresses are p_paddr + VIRT_BASE); the
    new ones are linked in the glue window whatever the kernel's offset, and loaded in
    the hole (the builder loads the window's segments by p_paddr, docs/ABI.md). ld
    puts no header segment in the hole here: the tables end at 1 MiB."""
    body = """
.globl _start
.type _start, @function
_start:
    cli
    mov eax, 0x11111111
    ret
"""
    elf, _ = build_kernel(tmp_path, body, data="value: .long 1\n", script=HIGHER_HALF)
    out = tmp_path / "high.pv.elf"
    patch_image(elf, out)
    loads = [s for s in segments(out) if s.type == "LOAD"]
    assert len(loads) == 4
    pvdata, pvtext = glue_segments(elf, out)
    for seg in loads:
        if seg not in (pvdata, pvtext):
            assert seg.vaddr - seg.paddr == 0xC0000000
    assert identity_tables(elf) == (HOLE_LIMIT - IDENTITY_TABLES * 4096, HOLE_LIMIT)
    xen = {kind: desc for name, kind, desc in notes(out) if name == b"Xen"}
    assert struct.unpack("<I", xen[3])[0] == 0xC0000000
    stub = int(json.loads(out.with_suffix(".json").read_text())["sites"][0]["stub"], 16)
    assert pvtext.vaddr <= stub < pvtext.vaddr + pvtext.memsz
    assert struct.unpack("<I", xen[1])[0] in range(pvtext.vaddr, pvtext.vaddr + pvtext.memsz)


def test_the_site_ranges_note_names_each_replaced_sites_code(hello):
    """pvtool note type 3 (docs/ABI.md): one (start, end, site) per site the patch
    replaced, in place over the original instruction's window or inside its stub, so
    the hypervisor can name the instruction whose replacement called the glue."""
    _, out, _ = hello
    rep = json.loads(out.with_suffix(".json").read_text())
    desc = [entry for name, kind, entry in notes(out) if name == b"pvtool" and kind == 3]
    assert len(desc) == 1
    ranges = [struct.unpack_from("<III", desc[0], i) for i in range(0, len(desc[0]), 12)]
    replaced = {address(s): s for s in rep["sites"] if s["placement"] in ("in-place", "detour")}
    assert sorted(site for _, _, site in ranges) == sorted(replaced)
    stubs = stub_ranges(out, rep)
    for start, end, site in ranges:
        placed = replaced[site]
        assert start < end
        if placed["placement"] == "detour":
            stub_start, stub_end = stubs[int(placed["stub"], 16)]
            assert stub_start <= start < end <= stub_end
        else:
            assert start <= site < end


def test_a_missing_output_directory_is_refused_before_any_work(tmp_path, monkeypatch):
    """Linux takes half a minute to discover: a typo in -o must not cost it."""
    from pvtool.errors import OutputError
    from pvtool.patch import pipeline

    def no_discovery(image):
        raise AssertionError("discovery ran before the outputs were checked")

    monkeypatch.setattr(pipeline, "discover_code", no_discovery)
    out = tmp_path / "missing" / "hello.pv.elf"
    with pytest.raises(OutputError, match="does not exist"):
        patch_image(guest_path("hello"), out)
