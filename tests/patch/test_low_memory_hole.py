"""Where the patcher loads the glue (docs/ABI.md, "The glue window"): in the PC's
low-memory hole [0xA0000, 1 MiB), which ends early at a segment of the kernel reaching
into it, below the PV entry's identity-map tables at the top of what is left. A kernel
whose segments leave no room is refused (exit status 76) and nothing is written.
Facts about the outputs are read back with readelf (tests/patch/tools.py)."""

import pytest

from pvtool.errors import PatchError
from pvtool.patch.pipeline import patch_image
from tests.cli import pvtool
from tests.patch.tools import (
    HOLE_BASE,
    IDENTITY_TABLES,
    PAGE,
    build_kernel,
    glue_segments,
    hole_limit,
    identity_tables,
    segments,
)

BODY = """
.globl _start
.type _start, @function
_start:
    cli
    mov eax, 0x11111111
    sti
    ret
"""

# The kernel at 1 MiB with one more section, loaded (and linked) at LOW in the hole.
IN_THE_HOLE = """
ENTRY(_start)
SECTIONS {{
    . = 0x100000;
    .text : {{ *(.text) }}
    .data ALIGN(4096) : {{ *(.data) }}
    .lowmem {low:#x} : {{ *(.lowmem) }}
}}
"""
LOWMEM = """
.section .lowmem, "aw"
lowmem_value: .long 0x12345678
.fill {size} - 4, 1, 0x5a
"""


def kernel_with_a_segment_at(directory, low: int, size: int = 4):
    elf, _ = build_kernel(directory, BODY + LOWMEM.format(size=size), data="value: .long 1\n",
                          script=IN_THE_HOLE.format(low=low))
    assert any(s.type == "LOAD" and s.paddr == low and s.memsz == size
               for s in segments(elf))
    return elf


def glue_pages(pvdata, pvtext) -> int:
    """Pages of the hole the glue takes, from its base to the end of .pvtext."""
    return -(-(pvtext.paddr + pvtext.memsz - HOLE_BASE) // PAGE)


def test_a_default_ld_kernel_has_its_headers_in_the_hole_and_the_glue_below_them(tmp_path):
    """ld -Ttext=0x100000 maps the ELF headers in a PT_LOAD at 0xFF000: the hole ends
    there, the identity tables end there, and the glue stays below them."""
    elf, _ = build_kernel(tmp_path, BODY)
    assert [s.paddr for s in segments(elf) if s.type == "LOAD"][0] == 0xFF000
    out = tmp_path / "kernel.pv.elf"
    patch_image(elf, out)
    assert hole_limit(elf) == 0xFF000
    assert identity_tables(elf) == (0xFF000 - IDENTITY_TABLES * PAGE, 0xFF000)
    pvdata, pvtext = glue_segments(elf, out)
    assert pvdata.paddr == HOLE_BASE


def test_the_glue_fits_a_hole_that_ends_exactly_at_the_identity_tables(tmp_path):
    """A kernel segment at the lowest address that still leaves room for the glue and
    the tables: patched, with the glue's last page right below the tables; one page
    lower and the patcher refuses it."""
    roomy = kernel_with_a_segment_at(tmp_path / "roomy", 0xFF000)
    patch_image(roomy, tmp_path / "roomy.pv.elf")
    needed = glue_pages(*glue_segments(roomy, tmp_path / "roomy.pv.elf"))

    low = HOLE_BASE + (needed + IDENTITY_TABLES) * PAGE
    tight = kernel_with_a_segment_at(tmp_path / "tight", low)
    out = tmp_path / "tight.pv.elf"
    patch_image(tight, out)
    pvdata, pvtext = glue_segments(tight, out)
    assert hole_limit(tight) == low
    assert glue_pages(pvdata, pvtext) == needed
    assert HOLE_BASE + needed * PAGE == identity_tables(tight)[0]

    too_tight = kernel_with_a_segment_at(tmp_path / "too-tight", low - PAGE)
    with pytest.raises(PatchError, match="low-memory hole"):
        patch_image(too_tight, tmp_path / "too-tight.pv.elf")
    assert not (tmp_path / "too-tight.pv.elf").exists()


@pytest.mark.parametrize(("low", "size"), [(HOLE_BASE, 4), (0xC0000, 4), (0x9F000, 0x2000)],
                         ids=["at-its-base", "in-its-middle", "reaching-in-from-below"])
def test_a_kernel_whose_segments_leave_no_room_in_the_hole_is_refused_with_76(
        tmp_path, low, size):
    """One line on stderr naming the hole, status 76, and no output file of any kind."""
    elf = kernel_with_a_segment_at(tmp_path / "build", low, size)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = pvtool("patch", elf, "-o", out_dir / "k.pv.elf")
    assert result.status == 76, (result.status, result.stderr)
    (line,) = result.stderr.splitlines()
    assert line.startswith("pvtool: error: ") and "low-memory hole" in line
    assert result.stdout == ""
    assert list(out_dir.iterdir()) == []
