"""When a patched kernel's glue gives up it says why (issue 12): the reason on Xen's
console (stderr, or the --xen-console file), then pvtool's error line
`crash: glue: REASON at eip SITE <symbol>`, SITE being the original instruction whose
replacement called the glue, and status 71; before, the user saw only
`shutdown: shutdown (crash)`. And images the PV boot cannot take
are refused by `pvtool patch` itself: a segment below 1 MiB."""

import pytest

from pvtool.abi.xen import FIRST_RESERVED_GDT_ENTRY
from pvtool.errors import GuestFault, UnsupportedImageError
from tests.cli import pvtool
from tests.patch.tools import build_kernel, segments

# lgdt of a GDT of the CPU's full size (limit 0xFFFF, 8,192 descriptors) whose entry
# 7,200 is present: Xen keeps entries 7,168 and up for itself.
FULL_GDT = """
.globl _start
.type _start, @function
_start:
    mov esp, 0x200000
    mov dword ptr [gdt + 7200 * 8], 0x0000ffff
    mov dword ptr [gdt + 7200 * 8 + 4], 0x00cf9200
    nop
the_lgdt:
    lgdt [gdt_pointer]
    hlt
"""
FULL_GDT_DATA = """
gdt_pointer: .word 0xffff
    .long gdt
.balign 4096
gdt: .fill 8192 * 8, 1, 0
"""
REASON = (f"glue: lgdt: a present descriptor at entry {FIRST_RESERVED_GDT_ENTRY} or above, "
          "where Xen keeps its own GDT entries")


@pytest.fixture(scope="module")
def full_gdt(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("full-gdt")
    elf, symbols = build_kernel(workdir, FULL_GDT, data=FULL_GDT_DATA)
    patched = workdir / "kernel.pv.elf"
    assert pvtool("patch", elf, "-o", patched).status == 0
    return elf, patched, symbols


def test_a_glue_failure_prints_its_reason_and_names_the_original_instruction(full_gdt,
                                                                            tmp_path):
    _, patched, symbols = full_gdt
    site = symbols["the_lgdt"]

    done = pvtool("run", "--quiet", "--xen-console", tmp_path / "xen.log", patched)

    assert done.stdout == ""
    # the glue's line on Xen's console
    assert (tmp_path / "xen.log").read_text() == REASON + "\n"
    assert done.error_line() == (f"pvtool: error: crash: {REASON} "
                                 f"at eip {site:#010x} <the_lgdt>")
    assert done.status == GuestFault.exit_status == 71


NON_NULL_LDT = """
.globl _start
.type _start, @function
_start:
    mov esp, 0x200000
    mov ax, 0x28
the_lldt:
    lldt ax
    hlt
"""


def test_every_glue_refusal_says_why_an_unsupported_ldt_too(tmp_path):
    elf, symbols = build_kernel(tmp_path, NON_NULL_LDT)
    patched = tmp_path / "kernel.pv.elf"
    assert pvtool("patch", elf, "-o", patched).status == 0

    done = pvtool("run", "--quiet", "--xen-console", tmp_path / "xen.log", patched)

    reason = "glue: lldt of a non-null LDT: only the null LDT is supported"
    assert done.stdout == ""
    assert (tmp_path / "xen.log").read_text() == reason + "\n"
    assert done.error_line() == (f"pvtool: error: crash: {reason} "
                                 f"at eip {symbols['the_lldt']:#010x} <the_lldt>")
    assert done.status == 71


def test_trap_and_emulate_refuses_the_same_gdt_with_the_same_status(full_gdt):
    elf, _, _ = full_gdt

    done = pvtool("run", "--trap", "--quiet", elf)

    assert "lgdt of 8192 descriptors: entry 7200 is present" in done.error_line()
    assert done.status == 71


LOW_SCRIPT = """
ENTRY(_start)
SECTIONS {
    . = 0x100000;
    .text : { *(.text) }
    .low 0x10000 : { *(.low) }
}
"""


def test_an_image_with_a_segment_below_1_mib_is_refused_by_the_patcher(tmp_path):
    body = ".globl _start\n_start:\n    cli\n    hlt\n.section .low, \"aw\"\n.long 1\n"
    elf, _ = build_kernel(tmp_path, body, script=LOW_SCRIPT)
    assert any(s.type == "LOAD" and s.paddr == 0x10000 for s in segments(elf))
    out = tmp_path / "out"
    out.mkdir()

    done = pvtool("patch", elf, "-o", out / "k.pv.elf")

    assert done.error_line() == (f"pvtool: error: {elf}: the image at physical 0x10000 (+0x4) "
                                 "lies below 1 MiB; pvtool patch takes kernels loaded from "
                                 "1 MiB up")
    assert done.status == UnsupportedImageError.exit_status == 69
    assert done.stdout == "" and list(out.iterdir()) == []
