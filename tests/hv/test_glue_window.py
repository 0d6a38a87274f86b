"""A patched kernel booted by pvtool's hypervisor (docs/ABI.md, "The glue window" and
"An identity map while paging is off"): the window is mapped into every address space
the domain uses (the builder's, the PV entry's identity map, the kernel's own), text
read-only, data writable, neither reachable from ring 3, each page on the frame its
segment's p_paddr names; hypercall pointers into the window are the domain's own memory
for a patched kernel and the hypervisor's for any other; the GDT shadow holds 512
descriptors and a larger GDT crashes the domain.

The kernels are built with gcc/ld and patched with `pvtool patch`; the segments are read
back with readelf (tests/patch/tools.py) and the page tables are walked here, from the
guest's CR3 (tests/hv/harness.py), not with pvtool's walker."""

import json
from functools import partial
from pathlib import Path

import pytest

from pvtool.image import elf_format
from pvtool.image.elf import load_elf
from pvtool.image.writer import AddedSection, build_patched_elf
from pvtool.machine.cpu import CR3
from pvtool.machine.stop import StopKind
from pvtool.patch.pipeline import patch_image
from tests import cli
from tests.hv.harness import RAM, RW, US, P, boot, hypercall
from tests.hv.xenguest import EFAULT, HC, Guest, neg
from tests.patch.tools import (
    GLUE_WINDOW,
    GLUE_WINDOW_SIZE,
    PAGE,
    REGS_CR0,
    REGS_CR3,
    Segment,
    build_kernel,
    glue_segments,
    identity_tables,
)

CR0_PG = 0x80000000
HYPERVISOR_START = 0xFC000000  # the 2-level layout's: L2 slots 1008-1023 are Xen's
XENVER_extraversion = 1  # public/version.h: 16 bytes, written by the hypervisor

# Paging "off" first: phase 1, then wait for the test to set `go`; then the kernel's own
# page directory (the first 4 MiB one to one, all writable), CR3, CR0.PG; phase 2 and
# the isa-debug-exit port (kept: the patched kernel has I/O privilege).
PAGING_KERNEL = """
.globl _start
.type _start, @function
_start:
    mov esp, offset stack_top
    mov dword ptr [phase], 1
wait_go:
    cmp dword ptr [go], 0
    je wait_go
    mov edi, offset pt
    mov eax, 0x3
    mov ecx, 1024
fill:
    mov dword ptr [edi], eax
    add eax, 4096
    add edi, 4
    dec ecx
    jnz fill
    mov eax, offset pt
    or eax, 3
    mov dword ptr [pd], eax
    mov eax, offset pd
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    mov dword ptr [phase], 2
    mov dx, 0xf4
    xor eax, eax
    out dx, al
spin:
    jmp spin
"""
PAGING_DATA = """
phase: .long 0
go: .long 0
.p2align 12
pd: .fill 1024, 4, 0
pt: .fill 1024, 4, 0
stack: .fill 1024, 1, 0
stack_top:
"""


@pytest.fixture(scope="module")
def paging_kernel(tmp_path_factory):
    """(original ELF, patched ELF, its symbols, .pvdata, .pvtext)."""
    workdir = tmp_path_factory.mktemp("glue-window")
    elf, symbols = build_kernel(workdir, PAGING_KERNEL, data=PAGING_DATA)
    out = workdir / "kernel.pv.elf"
    patch_image(elf, out)
    pvdata, pvtext = glue_segments(elf, out)
    return elf, out, symbols, pvdata, pvtext


def booted_kernel(paging_kernel):
    elf, out, symbols, _, _ = paging_kernel
    return boot(Guest(out, symbols))


def pages(seg: Segment) -> range:
    return range(-(-seg.memsz // PAGE))


def assert_window_mapped(booted, out: Path, pvdata: Segment, pvtext: Segment) -> None:
    """In the address space in CR3: every page of both segments present on the frame
    p_paddr names, .pvdata writable, .pvtext read-only, ring 3 kept out at both levels;
    the window's page table is not one of the domain's frames (the guest cannot remap
    it); the rest of the window is not mapped; .pvtext's frames hold the file's bytes."""
    pde = booted.pde(GLUE_WINDOW)
    assert pde & P and not pde & US
    assert pde >> 12 >= RAM // PAGE, f"the window's page table {pde:#x} is the domain's"
    for seg, writable in ((pvdata, True), (pvtext, False)):
        for i in pages(seg):
            pte = booted.pte(seg.vaddr + i * PAGE)
            where = f"{seg.vaddr + i * PAGE:#x}: pte {pte:#x}"
            assert pte & P, where
            assert pte >> 12 == seg.paddr // PAGE + i, where
            assert bool(pte & RW) == writable, where
            assert not pte & US, where
    glue_end = pvtext.vaddr + len(pages(pvtext)) * PAGE
    for vaddr in range(glue_end, GLUE_WINDOW + GLUE_WINDOW_SIZE, PAGE):
        assert not booted.pte(vaddr) & P, f"{vaddr:#x} is mapped past the glue"
    text = out.read_bytes()[pvtext.offset:pvtext.offset + pvtext.filesz]
    assert booted.memory.read_phys(pvtext.paddr, pvtext.filesz) == text


def builder_tables(booted) -> set[int]:
    """The builder's page directory and the page tables of its guest slots, walked
    from CR3 before the kernel runs (its virtual addresses are physical ones)."""
    cr3 = booted.cpu.read(CR3) & ~0xFFF
    pdes = (booted.pde(vaddr, cr3) for vaddr in range(0, HYPERVISOR_START, 4 << 20))
    return {cr3} | {pde & ~0xFFF for pde in pdes if pde & P}


def test_the_builders_address_space_maps_the_window(paging_kernel):
    elf, out, _, pvdata, pvtext = paging_kernel
    booted = booted_kernel(paging_kernel)
    assert_window_mapped(booted, out, pvdata, pvtext)


def test_the_pv_entry_switches_to_an_identity_map_of_ram_that_maps_the_window(paging_kernel):
    """While the kernel believes paging is off: CR3 is the identity map's L2 at the top
    of the hole, its L1s follow it there, every page of RAM is mapped at its own address,
    writable unless it is one of those tables (a page table in use is never writable)
    or one of the builder's, which stay validated, hence read-only, until the kernel
    writes into them (docs/ABI.md), and nothing above RAM is mapped."""
    elf, out, _, pvdata, pvtext = paging_kernel
    booted = booted_kernel(paging_kernel)
    builders = builder_tables(booted)
    booted.run_until("phase", 1)
    tables_start, tables_end = identity_tables(elf)
    cr3 = booted.cpu.read(CR3)
    assert cr3 & ~0xFFF == tables_start
    l1s = [booted.pde(vaddr, cr3) & ~0xFFF for vaddr in range(0, RAM, 4 << 20)]
    assert l1s == [tables_start + PAGE * (1 + i) for i in range(RAM >> 22)]
    in_use = {tables_start, *l1s}
    for vaddr in range(0, RAM, PAGE):
        pte = booted.pte(vaddr, cr3)
        assert pte & P and pte & ~0xFFF == vaddr, f"{vaddr:#x}: pte {pte:#x}"
        assert bool(pte & RW) == (vaddr not in in_use | builders), f"{vaddr:#x}: pte {pte:#x}"
    assert not booted.pte(RAM, cr3) & P
    assert max(in_use) < tables_end
    assert_window_mapped(booted, out, pvdata, pvtext)


def test_the_kernels_own_page_tables_map_the_window_and_the_glue_writes_through_it(
        paging_kernel):
    """After CR3 and CR0.PG: the kernel's directory is the base, the window is in it
    (the kernel mapped nothing there), and the glue's register block in .pvdata, which
    the glue writes through the window, holds what the kernel wrote to CR3 and CR0."""
    elf, out, symbols, pvdata, pvtext = paging_kernel
    booted = booted_kernel(paging_kernel)
    booted.run_until("phase", 1)
    booted.write_u32s("go", 1)
    stop = booted.run()
    assert stop.kind is StopKind.GUEST_EXIT and stop.code == 0, stop
    assert booted.u32("phase") == 2
    assert booted.cpu.read(CR3) & ~0xFFF == symbols["pd"]
    assert_window_mapped(booted, out, pvdata, pvtext)
    cr0, cr3 = (booted.u32(pvdata.paddr + offset) for offset in (REGS_CR0, REGS_CR3))
    assert cr3 == symbols["pd"] and cr0 & CR0_PG


# -- hypercall pointers into the window --------------------------------------------------


def test_a_patched_kernels_hypercalls_may_point_into_its_glue_window(paging_kernel):
    """.pvdata is written (xen_version's extraversion lands in its frame), .pvtext is
    read (console_io prints its bytes) but not written, and the window past the glue
    is unmapped: EFAULT."""
    elf, out, _, pvdata, pvtext = paging_kernel
    booted = booted_kernel(paging_kernel)
    buffer = pvdata.vaddr + pvdata.memsz - 16  # in the GDT shadow, unused so far
    assert hypercall(booted, HC.xen_version, XENVER_extraversion, buffer) == 0
    written = booted.memory.read_phys(pvdata.paddr + pvdata.memsz - 16, 16)
    assert written != bytes(16)
    assert hypercall(booted, HC.console_io, 0, 8, pvtext.vaddr) == 0
    assert bytes(booted.output) == out.read_bytes()[pvtext.offset:pvtext.offset + 8]
    assert hypercall(booted, HC.xen_version, XENVER_extraversion, pvtext.vaddr) == neg(EFAULT)
    past = pvtext.vaddr + len(pages(pvtext)) * PAGE
    assert hypercall(booted, HC.console_io, 0, 4, past) == neg(EFAULT)
    assert hypercall(booted, HC.console_io, 0, 8, GLUE_WINDOW + GLUE_WINDOW_SIZE - 4) \
        == neg(EFAULT)  # runs out of the window into the rest of the hypervisor


def test_a_domain_without_glue_has_no_window(idle):
    """A kernel written for Xen: the window's slot is empty and a pointer into it is the
    hypervisor's range, EFAULT."""
    assert not idle.pde(GLUE_WINDOW) & P
    assert hypercall(idle, HC.console_io, 0, 4, GLUE_WINDOW) == neg(EFAULT)
    assert hypercall(idle, HC.xen_version, XENVER_extraversion, GLUE_WINDOW) == neg(EFAULT)


# -- the GDT shadow: 14 pages, the 7,168 descriptors Xen's set_gdt takes ------------------

XEN_GDT_ENTRIES = 7168  # FIRST_RESERVED_GDT_ENTRY, xen/include/public/arch-x86/xen.h
CPU_GDT_ENTRIES = 8192  # a limit of 0xFFFF
LGDT_KERNEL = """
.globl _start
.type _start, @function
_start:
    nop
the_lgdt:
    lgdt [gdt_pointer]
    mov dx, 0xf4
    xor eax, eax
    out dx, al
spin:
    jmp spin
"""
LGDT_DATA = """
gdt_pointer:
    .word {entries} * 8 - 1
    .long gdt
.p2align 3
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff  /* flat code, DPL 0 */
    .quad 0x00cf92000000ffff  /* flat data, DPL 0 */
    .fill {entries} - 4, 8, 0
    .quad {last}
"""
FLAT_DATA = 0x00CF92000000FFFF


def lgdt_kernel(directory: Path, entries: int, last: int = 0) -> tuple[Path, dict[str, int]]:
    elf, symbols = build_kernel(directory, LGDT_KERNEL,
                                data=LGDT_DATA.format(entries=entries, last=last))
    out = directory / "lgdt.pv.elf"
    patch_image(elf, out)
    return out, symbols


pvtool_run = partial(cli.pvtool, "run", installed=True, timeout=60)


@pytest.mark.parametrize("entries", [XEN_GDT_ENTRIES, CPU_GDT_ENTRIES])
def test_a_gdt_up_to_the_cpus_size_is_loaded_while_xens_entries_stay_empty(tmp_path, entries):
    """The shadow holds what set_gdt takes; entries past it that are not present are
    left out and the GDT still loads, with one set_gdt."""
    out, _ = lgdt_kernel(tmp_path, entries, last=FLAT_DATA if entries == XEN_GDT_ENTRIES else 0)
    done = pvtool_run("--json", tmp_path / "run.json", str(out))
    assert done.status == 0, done.stderr
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["hypercalls"]["set_gdt"] == 1


def test_a_present_descriptor_in_xens_entries_crashes_the_domain_with_its_reason(tmp_path):
    """pv_lgdt refuses what Xen could not give the kernel: it prints why on the console,
    the domain crashes (status 71) at the original lgdt, and set_gdt is never made."""
    out, symbols = lgdt_kernel(tmp_path, XEN_GDT_ENTRIES + 1, last=FLAT_DATA)
    done = pvtool_run("--json", tmp_path / "run.json", str(out))
    assert done.status == 71, done.stderr
    assert done.stderr.startswith("glue: lgdt: a present descriptor at entry 7168")
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["stop"]["kind"] == StopKind.CRASH.value
    assert summary["stop"]["reason"] == done.stderr.splitlines()[0]
    assert not summary["stop"]["guest_chose"]
    assert summary["stop"]["eip"] == symbols["the_lgdt"]
    assert "set_gdt" not in summary["hypercalls"]


def test_a_gap_between_window_segments_is_left_unmapped(build, tmp_path):
    """The builder maps each page of the window's segments and nothing else: a page
    between two of them is not present (not some frame of the domain's)."""
    guest = build("")
    blob = build_patched_elf(load_elf(guest.path), patches={}, notes=None, added=[
        AddedSection(".glue_data", GLUE_WINDOW, b"\xaa" * 16, PAGE,
                     elf_format.PF_R | elf_format.PF_W, paddr=0xA0000),
        AddedSection(".glue_text", GLUE_WINDOW + 3 * PAGE, b"\xbb" * 16, PAGE,
                     elf_format.PF_R | elf_format.PF_X, paddr=0xA3000),
    ])
    path = tmp_path / "gap.elf"
    path.write_bytes(blob)
    booted = boot(Guest(path, guest.symbols))
    first, gap, gap2, last = (booted.pte(GLUE_WINDOW + i * PAGE) for i in range(4))
    assert first & P and first & RW and first >> 12 == 0xA0
    assert last & P and not last & RW and last >> 12 == 0xA3
    assert not gap & P and not gap2 & P, (hex(gap), hex(gap2))
    assert booted.memory.read_phys(0xA3000, 16) == b"\xbb" * 16
