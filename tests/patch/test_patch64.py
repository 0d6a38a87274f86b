"""`pvtool patch` on 64-bit kernels, end to end: a kernel shaped like guests64's
minikern64 (a 32-bit Multiboot stub in a section of its own, a 64-bit e_entry, linked
at 0xffffffff80100000, loaded at 1 MiB) is built by GNU as and ld, patched through the
CLI with the default patch set (xen64), and what was written is read back by binutils
(readelf, objdump) and by the few lines of struct code in tests/patch/tools.py.

Xen's facts the tests check are typed here from XEN-ABI64.md, not imported: the
hypercall page's entries (1.2), the notes of a 64-bit kernel (1.8).
"""

import json
import re
import struct

import pytest

from tests.binutils import build_once
from tests.cli import pvtool
from tests.patch.kernel64 import KERNBASE, LINK, PAGE, build_kernel64, patch_kernel64
from tests.patch.tools import note, notes, objdump, read_virtual, sections, segments

# public/elfnote.h: ENTRY 1, HYPERCALL_PAGE 2, VIRT_BASE 3, XEN_VERSION 5, GUEST_OS 6,
# LOADER 8, PAE_MODE 9. pvtool's note 1 is the trap-site table (docs/ABI.md).
XEN_ENTRY, XEN_HYPERCALL_PAGE, XEN_VIRT_BASE, XEN_VERSION = 1, 2, 3, 5
XEN_GUEST_OS, XEN_LOADER, XEN_PAE_MODE = 6, 8, 9
PVTOOL_TRAP_SITES = 1

# What each class becomes under xen64 (patches/xen64/rules.toml): rewritten (in
# place or by a detour), kept with a reason, or left to a trap site.
KEPT = {"in", "out", "ins", "outs", "lar", "lsl", "verr", "verw", "xsetbv", "invpcid"}
TRAPPED = {"mov_to_dr", "mov_from_dr"}


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    return build_kernel64(tmp_path_factory)


@pytest.fixture(scope="module")
def patched(kernel, tmp_path_factory):
    return patch_kernel64(kernel, tmp_path_factory)


def SWAPGS_PAIRS(kernel) -> dict[int, str]:  # noqa: N802
    """The swapgs before each sysretq and sysexitq, sites without a label of their own."""
    return {kernel["site_sysret"] - 3: "swapgs", kernel["site_sysexit"] - 3: "swapgs"}


def expected_sites(kernel) -> dict[int, str]:
    return {value: name.removeprefix("site_") for name, value in kernel.symbols.items()
            if name.startswith("site_")}


def test_every_site_of_a_64_bit_kernel_is_found_and_placed(kernel, patched):
    _, report = patched
    assert report["patch_set"] == "xen64"
    found = {_address(s): (s["class"], s["placement"], s["reason"]) for s in report["sites"]}
    expected = expected_sites(kernel)
    assert {a: c for a, (c, _, _) in found.items()} == {**expected, **SWAPGS_PAIRS(kernel)}
    for address, name in expected.items():
        placement = found[address][1]
        if name in KEPT:  # as it is, or moved as it is into a neighbour's detour
            assert placement == "kept" or "kept as is, moved" in found[address][2], name
        elif name in TRAPPED:
            assert placement == "trap", name
        else:
            assert placement in ("in-place", "detour"), (name, placement)


def test_the_report_counts_agree_with_the_sites(patched):
    _, report = patched
    by_placement = {}
    for site in report["sites"]:
        by_placement[site["placement"]] = by_placement.get(site["placement"], 0) + 1
    assert len(report["sites"]) == 56  # 54 labelled sites and two unlabelled swapgs
    moved_as_is = [s for s in report["sites"] if "kept as is, moved" in s["reason"]]
    assert by_placement["kept"] + len(moved_as_is) == len(KEPT)
    assert by_placement["trap"] == len(TRAPPED)
    assert report["placements"] == by_placement


def test_the_32_bit_multiboot_stub_is_left_as_it_is(kernel, patched):
    out, report = patched
    boot = sections(kernel.elf)[".boot32"]
    assert read_virtual(out, boot.address, boot.size) == \
        read_virtual(kernel.elf, boot.address, boot.size)
    assert not [s for s in report["sites"]
                if boot.address <= _address(s) < boot.address + boot.size]


def test_every_detour_jumps_into_pvtext_and_its_stub_returns(kernel, patched):
    out, report = patched
    text = sections(out)[".pvtext"]
    lines = {line.address: line for line in objdump(out, section=".text")}
    stubs = {_address({"address": s["stub"]}) for s in report["sites"] if s.get("stub")}
    jumps = [line for line in lines.values()
             if line.mnemonic == "jmp" and line.target in stubs]
    assert len({j.target for j in jumps}) == len(stubs) > 20
    for jump in jumps:
        assert text.address < jump.target < text.address + text.size
        stub = objdump(out, section=".pvtext", start=jump.target, stop=jump.target + 512)
        back = next(line for line in stub if line.mnemonic == "jmp"
                    and line.target is not None and not text.address <= line.target
                    < text.address + text.size)
        assert back.target in lines  # after the window, at an instruction of .text


def test_the_new_sections_sit_high_past_the_image_within_reach(kernel, patched):
    out, _ = patched
    loads = [s for s in segments(out) if s.type == "LOAD"]
    original = [s for s in segments(kernel.elf) if s.type == "LOAD"]
    end = max(s.vaddr + s.memsz for s in original)
    added = loads[len(original):]
    assert [s.flags for s in added] == ["RW", "RE"]
    # at 16 MiB past VIRT_BASE (the image ends below it), past the RAM a kernel takes
    assert end - KERNBASE < 16 << 20
    assert added[0].vaddr == KERNBASE + (16 << 20)
    assert added[1].vaddr + added[1].memsz - added[0].vaddr <= 2 << 20  # one L1's span
    for seg in added:
        assert seg.vaddr - seg.paddr == KERNBASE  # loaded as the kernel: VIRT_BASE + phys
        assert seg.vaddr + seg.memsz - LINK < 1 << 31  # a rel32 from any code reaches it
    assert {name for name in sections(out)} >= {".pvdata", ".pvtext"}


def test_the_xen_notes_are_a_64_bit_kernels(patched):
    out, _ = patched
    text = sections(out)[".pvtext"]
    word = lambda kind: struct.unpack("<Q", note(out, b"Xen", kind))[0]  # noqa: E731
    assert word(XEN_VIRT_BASE) == KERNBASE
    assert word(XEN_HYPERCALL_PAGE) == text.address
    assert text.address + PAGE <= word(XEN_ENTRY) < text.address + text.size
    assert note(out, b"Xen", XEN_VERSION) == b"xen-3.0\0"
    assert note(out, b"Xen", XEN_LOADER) == b"generic\0"
    assert note(out, b"Xen", XEN_PAE_MODE) == b"yes\0"
    assert note(out, b"Xen", XEN_GUEST_OS) == b"pvtool-port\0"
    readelf_notes = [owner for owner, _, _ in notes(out)]
    assert readelf_notes.count(b"Xen") == 8


def test_the_hypercall_page_is_xens_64_bit_one(patched):
    out, _ = patched
    page = read_virtual(out, sections(out)[".pvtext"].address, PAGE)
    # XEN-ABI64.md 1.2: push rcx; push r11; mov eax, i; syscall; pop r11; pop rcx; ret
    for number in (0, 1, 17, 29, 33):
        entry = page[32 * number:32 * number + 14]
        assert entry == bytes.fromhex("514153b8") + struct.pack("<I", number) + \
            bytes.fromhex("0f05415b59c3")
    assert page[32 * 23:32 * 23 + 11] == bytes.fromhex("51415350b8170000000f05")


def test_trap_sites_are_recorded_with_64_bit_addresses(kernel, patched):
    out, report = patched
    table_address, count = struct.unpack("<QQ", note(out, b"pvtool", PVTOOL_TRAP_SITES))
    traps = sorted(_address(s) for s in report["sites"] if s["placement"] == "trap")
    assert count == len(traps)
    entries = read_virtual(out, table_address, 32 * count)
    recorded = []
    for index in range(count):
        address, length = struct.unpack_from("<QB", entries, 32 * index)
        original = entries[32 * index + 16:32 * index + 16 + length]
        assert original == read_virtual(kernel.elf, address, length)
        assert read_virtual(out, address, 1) == b"\xcc"
        recorded.append(address)
    assert sorted(recorded) == traps


def test_a_moved_rip_relative_operand_names_the_same_address(kernel, patched):
    """`mov rdx, [rip + scratch]` shares a detour with the mov-from-CS site before it:
    in the stub it must still read `scratch`."""
    out, report = patched
    site = kernel["site_mov_from_sreg"]
    detour = next(s for s in report["sites"] if _address(s) == site)
    assert detour["placement"] == "detour"
    jump = {line.address: line for line in objdump(out, section=".text")}[detour_start(
        report, site)]
    stub = objdump(out, section=".pvtext", start=jump.target, stop=jump.target + 64)
    moved = [line for line in stub
             if line.mnemonic == "mov" and line.operands.startswith("rdx,") and "rip" in line.text]
    assert moved and f"{kernel['scratch']:x}" in moved[0].text


def test_the_listing_diff_names_the_glue(patched):
    out, _ = patched
    diff = out.with_suffix(".diff").read_text()
    assert "<pv_entry>" in diff and "<pv_write_cr3>" in diff
    assert re.search(r"^-ffffffff8\w+ <start64>: cli$", diff, re.MULTILINE)


def test_diffstat_measures_the_64_bit_port(kernel, patched):
    out, report = patched
    result = pvtool("diffstat", kernel.elf, out)
    assert result.status == 0, result.stderr
    parts = dict(re.findall(r"^(sites|stubs|glue)\s.*?(\d+)\s+\d+$", result.stdout,
                            re.MULTILINE))
    assert int(parts["glue"]) > 500  # patches/xen64/glue.asm, hand-written
    assert int(parts["stubs"]) > 0 and int(parts["sites"]) > 0
    assert re.search(r"lines modified or added: \d+ of \d+ baseline lines", result.stdout)


def test_a_32_bit_patch_set_on_a_64_bit_kernel_is_one_clear_error(kernel, tmp_path):
    result = pvtool("patch", kernel.elf, "--patch-set", "xen32", "-o", tmp_path / "x.elf")
    assert result.status == 69
    assert result.error_line() == (f"pvtool: error: {kernel.elf}: a 64-bit kernel, but "
                                   "patch set xen32 patches 32-bit kernels (use "
                                   "--patch-set xen64)")
    assert list(tmp_path.iterdir()) == []


def _address(site: dict) -> int:
    value = site["address"]
    return int(value, 16) if isinstance(value, str) else value


def detour_start(report: dict, address: int) -> int:
    """Where the detour holding the site at ADDRESS begins: the first site sharing its
    stub (the window's first instruction is a site, or a site's neighbour before it)."""
    stub = next(s["stub"] for s in report["sites"] if _address(s) == address)
    return min(_address(s) for s in report["sites"] if s.get("stub") == stub)


# ---- hostile 64-bit inputs: one line, a distinct status, nothing written

SPIN = """
.intel_syntax noprefix
.text
.globl start64
start64:
    cli
    hlt
    jmp start64
.section .far, "ax"
over:
    sti
    ret
"""


def _hostile(tmp_path_factory, name: str, script: str):
    return build_once(tmp_path_factory.getbasetemp() / "hostile64", SPIN, name=name,
                      bits=64, script=script,
                      flags=("-nostdlib", "--build-id=none", "-z", "noexecstack",
                             "-z", "max-page-size=0x1000")).elf


def _refused(path, tmp_path, status: int) -> str:
    before = path.read_bytes()
    result = pvtool("patch", path, "-o", tmp_path / "out.elf")
    assert result.status == status, result.stderr
    assert result.stdout == "" and list(tmp_path.iterdir()) == []
    assert path.read_bytes() == before
    return result.error_line()


def test_a_virt_base_off_a_1_gib_boundary_is_refused(tmp_path_factory, tmp_path):
    path = _hostile(tmp_path_factory, "offset", """
        ENTRY(start64)
        SECTIONS { . = 0xffffffff80100000;
                   .text : AT(0x200000) { *(.text) *(.far) } }""")
    line = _refused(path, tmp_path, 76)
    assert "VIRT_BASE (vaddr - paddr) 0xffffffff7ff00000 is not on a 1 GiB boundary" in line


def test_code_beyond_a_rel32_of_the_added_sections_is_refused(tmp_path_factory, tmp_path):
    path = _hostile(tmp_path_factory, "spread", """
        ENTRY(start64)
        SECTIONS { . = 0x100000; .text : { *(.text) }
                   . = 0x100000000; .far : AT(0x100000000) { *(.far) } }""")
    line = _refused(path, tmp_path, 76)
    assert "span more than 2 GiB, the reach of a detour's rel32 jump" in line


@pytest.mark.parametrize(("where", "value", "status"), [
    (0x20, 1 << 40, 65),  # e_phoff far beyond the file
    (0x38, 0x7FFF, 65),  # e_phnum: program headers past the end of the file
])
def test_a_corrupt_elf64_header_is_one_line(kernel, tmp_path, where, value, status):
    data = bytearray(kernel.elf.read_bytes())
    size = 8 if where == 0x20 else 2
    data[where:where + size] = value.to_bytes(size, "little")
    path = tmp_path / "bad" / "k64.elf"
    path.parent.mkdir()
    path.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    _refused(path, out, status)


def test_a_truncated_elf64_kernel_is_one_line(kernel, tmp_path):
    path = tmp_path / "bad" / "k64.elf"
    path.parent.mkdir()
    path.write_bytes(kernel.elf.read_bytes()[:0x1040])
    out = tmp_path / "out"
    out.mkdir()
    _refused(path, out, 65)


RIP_KERNEL = """
.intel_syntax noprefix
.text
.globl start64
.type start64, @function
start64:
    nop
    jmp self
self:
site_self:  cli
rip_self:   mov rax, qword ptr [rip + site_self]
    jmp over
over:
site_far:   cli
rip_far:    mov rax, qword ptr [rip + far_data]
    ret
.size start64, . - start64
"""
LINKED_HIGH = """
ENTRY(start64)
SECTIONS { . = 0xffffffff80100000;
           .text : AT(0x100000) { *(.text) }
           far_data = 0xffffffff00200000; }"""


def test_a_detour_never_displaces_a_rip_relative_operand_it_cannot_fix(tmp_path_factory,
                                                                       tmp_path):
    """After each cli, a mov RIP-relative to the cli itself (bytes the detour's jmp
    replaces) and one to an address out of a disp32's reach from the stubs: neither
    may move into a stub. Each cli is a branch target, so it has no window of its own."""
    kernel = build_once(tmp_path_factory.getbasetemp() / "rip64", RIP_KERNEL, name="rip",
                        bits=64, script=LINKED_HIGH,
                        flags=("-nostdlib", "--build-id=none", "-z", "noexecstack"))
    out = tmp_path / "rip.pv.elf"
    assert pvtool("patch", kernel.elf, "-o", out).status == 0
    report = json.loads(out.with_suffix(".json").read_text())
    placed = {_address(s): s["placement"] for s in report["sites"]}
    assert placed == {kernel["site_self"]: "trap", kernel["site_far"]: "trap"}
    for name in ("rip_self", "rip_far"):
        assert read_virtual(out, kernel[name], 7) == read_virtual(kernel.elf, kernel[name], 7)
