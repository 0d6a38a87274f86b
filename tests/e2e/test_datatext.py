"""datatext: data among a kernel's code, in the shapes of issue 12's failures. Its
Multiboot header opens .text (the checksum's low byte, 0xFB, is `sti`: a tutorial
kernel's patch put a detour over it), its .rodata with strings of port-I/O opcodes and
jump tables shares the executable segment (xv6's: 133 of 249 sites were .rodata ASCII
decoded as ins/outs). Patched with its section headers and without them (then only the
segments say what may be code), verified, and booted under PV and trap-and-emulate
with the bytes native prints, which are QEMU's.
"""

import re
from functools import partial
from pathlib import Path

import pytest

from tests import cli
from tests.oracles import guest_path, require_tool, run_qemu
from tests.patch.tools import (
    address,
    changed_ranges,
    read_virtual,
    report,
    run,
    sections,
    without_section_headers,
)

pvtool = partial(cli.pvtool, process=True, timeout=120)
HEADER_SIZE = 12  # magic, flags, checksum: flags 3 ask for no more (Multiboot 3.1.1)
@pytest.fixture(scope="module")
def layout():
    found = sections(guest_path("datatext"))
    return found[".text"], found[".rodata"]


@pytest.fixture(scope="module")
def native():
    done = pvtool("run", "--native", "--quiet", guest_path("datatext"))
    assert done.status == 0, done.stderr
    return done.stdout_bytes


def patch(original: Path, out: Path) -> tuple[Path, Path, dict]:
    done = pvtool("patch", original, "-o", out)
    assert done.status == 0, done.stderr
    return original, out, report(out)


@pytest.fixture(scope="module", params=["sections", "no sections"])
def patched(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("datatext")
    original = guest_path("datatext")
    if request.param == "no sections":
        original = without_section_headers(original, workdir / "datatext.elf")
    return request.param, *patch(original, workdir / "datatext.pv.elf")


@pytest.fixture(scope="module")
def with_sections(tmp_path_factory):
    """The patched kernel, whose section headers objdump reads the stubs by."""
    return patch(guest_path("datatext"), tmp_path_factory.mktemp("sections") / "dt.pv.elf")


def test_the_guest_has_the_shape(layout):
    text, rodata = layout
    elf = guest_path("datatext")
    assert read_virtual(elf, text.address + 8, 1) == b"\xfb"  # the checksum: sti
    listing = run(require_tool("objdump"), "-D", "-j", ".rodata", "-M", "intel",
                  str(elf)).stdout
    assert re.search(r"\t(ins|outs) ", listing)  # its strings decode as port I/O
    code = run(require_tool("objdump"), "-d", "-M", "intel", str(elf)).stdout
    assert re.search(r"jmp +DWORD PTR \[eax\*4\+0x[0-9a-f]+\]", code)  # a jump table


def test_native_run_equals_qemu(native):
    qemu = run_qemu(guest_path("datatext"))
    assert qemu.guest_code == 0
    assert native == qemu.stdout
    assert native.endswith(b"datatext: all 2 checks passed\n")


def test_the_patched_kernel_runs_under_pv_as_natively(patched, native):
    _, _, out, _ = patched
    done = pvtool("run", "--quiet", out)
    assert done.status == 0, done.stderr
    assert done.stdout_bytes == native


def test_the_original_runs_trapped_and_emulated_as_natively(native):
    done = pvtool("run", "--trap", "--quiet", guest_path("datatext"))
    assert done.status == 0, done.stderr
    assert done.stdout_bytes == native


def test_the_multiboot_header_is_data_and_unchanged(patched, layout):
    _, original, out, rep = patched
    header = layout[0].address
    assert read_virtual(out, header, HEADER_SIZE) == read_virtual(original, header,
                                                                   HEADER_SIZE)
    assert not [s for s in rep["sites"] if header <= address(s) < header + HEADER_SIZE]
    assert rep["coverage_bytes"]["data"] >= HEADER_SIZE


def test_no_byte_of_rodata_is_rewritten(patched, layout):
    kind, original, out, rep = patched
    rodata = layout[1]
    start, end = rodata.address, rodata.address + rodata.size
    assert read_virtual(out, start, rodata.size) == read_virtual(original, start,
                                                                 rodata.size)
    inside = [s for s in rep["sites"] if start <= address(s) < end]
    if kind == "sections":  # .rodata is data: nothing there is a site
        assert inside == []
        assert ".rodata" not in rep["possible_code"]["by_section"]
    else:  # only the sweep decodes its strings: possible code, its sites left as is
        assert inside and {(s["found_by"], s["placement"]) for s in inside} == {
            ("sweep", "kept")}
        assert {s["class"] for s in inside} >= {"ins", "outs"}


def test_no_window_covers_a_jump_table_entry(with_sections, layout):
    original, out, rep = with_sections
    text = layout[0]
    code = run(require_tool("objdump"), "-d", "-M", "intel", str(guest_path("datatext")))
    tables = {int(t, 16) for t in re.findall(r"jmp +DWORD PTR \[eax\*4\+(0x[0-9a-f]+)\]",
                                             code.stdout)}
    entries = set()
    for entry in tables:  # a table's words, while they point into .text
        while text.address <= (value := int.from_bytes(read_virtual(original, entry, 4),
                                                       "little")) < text.address + text.size:
            entries.add(value)
            entry += 4
    assert len(entries) > len(tables)
    for start, end, kind in changed_ranges(original, out, rep):
        assert not [e for e in entries if start < e < end], (kind, hex(start), hex(end))
