"""The domain builder for 64-bit PV kernels ("xen-3.0-x86_64"), as Xen's toolstack
lays one out (tools/libs/guest/xg_dom_x86.c; XEN-ABI64.md 1.8).

After the kernel (and its modules), each page aligned, virtual = VIRT_BASE + pfn * 4096:
the p2m list (8 bytes a page), start_info, the xenstore page, the console ring page,
the bootstrap page tables (one L4, then the L3s, the L2s and the L1s that map
[VIRT_BASE, v_end)) and one boot-stack page; the mapping ends on a 4 MiB boundary with
at least 512 KiB to spare. The builder writes the tables as the toolstack does: L1
entries 0x023 (P|RW|A), 0x021 for the page-table frames themselves (read-only), L2-L4
entries 0x067. The hypervisor then pins the L4, which validates the whole tree: the
user bit every level gets and Xen's own slots are the validator's (hv/validator.py),
not the builder's.

The vCPU starts in kernel mode at CPL 3, RIP = entry, RSP = the boot stack's top,
RSI = start_info, RFLAGS = IF, CS 0xe033, SS 0xe02b, data segments null, CR3 = the
L4, EFER with long mode, SYSCALL and NX enabled, CR4.FSGSBASE clear (Unicorn sets
it, Xen gives a guest a virtual CR4 without it: XEN-ABI64.md 1.6, 2.4).
"""

import struct
from pathlib import Path

from pvtool.abi import xen64
from pvtool.abi.xen64 import START_INFO_64
from pvtool.errors import UnsupportedImageError
from pvtool.hv import layout, layout64
from pvtool.hv.builder import (
    CR0_PV,
    BootLayout,
    check_fits,
    load_symtab,
    mask_all_events,
    plan_boot,
    start_info_fields,
)
from pvtool.hv.multiboot_boot import LoadedModules, load_modules
from pvtool.hv.note_checks import check_notes
from pvtool.image.elf import ElfImage
from pvtool.image.xen_notes import XenNotes
from pvtool.machine.cpu import CR0, CR3, CR4, DS, ES, FS, GDTR, GPRS64_BY_NAME, GS, RIP
from pvtool.machine.pc import Machine
from pvtool.machine.rings import enter_cpl3_long_mode
from pvtool.x86 import paging
from pvtool.x86.msrs import EFER_LMA, EFER_LME, EFER_NXE, EFER_SCE, IA32_EFER
from pvtool.x86.paging import PAGE_SHIFT, PAGE_SIZE
from pvtool.x86.registers import CR4_FSGSBASE, CR4_PAE

L1_FLAGS = paging.P | paging.RW | paging.A  # 0x023
L1_READ_ONLY = paging.P | paging.A  # 0x021: the page-table frames
UPPER_FLAGS = paging.P | paging.RW | paging.US | paging.A | paging.D  # 0x067
RFLAGS_AT_ENTRY = 0x200  # IF: the virtual IF is the upcall mask, which starts at 1
EFER_PV = EFER_LME | EFER_LMA | EFER_SCE | EFER_NXE
GUEST_KERNEL_CPL = xen64.GUEST_KERNEL_RPL_64
# The bits of a virtual address that pick a table's entry at each level: the table
# of level N covers 1 << SPAN_SHIFT[N] bytes.
SPAN_SHIFT = {1: 21, 2: 30, 3: 39, 4: 48}
ENTRY_SHIFT = {1: 12, 2: 21, 3: 30, 4: 39}
# Xen checks HV_START_LOW for 32-bit guests only (dom0_build.c, libxl): a 64-bit
# kernel's (Linux gives __HYPERVISOR_VIRT_START) is never too high.
NO_HYPERVISOR_START_LIMIT = 1 << 64


def build_domain64(machine: Machine, image: ElfImage, notes: XenNotes, nr_pages: int,
                   cmdline: bytes, modules: tuple[Path, ...] = ()) -> BootLayout:
    """Load a 64-bit kernel, its modules and the boot structures; return the layout."""
    virt_base = notes.virt_base or 0
    start, end = load_kernel64(machine, image, notes, nr_pages)
    if notes.bsd_symtab:
        end = load_symtab(machine, image, virt_base, end, nr_pages)
    check_notes(image, notes, end, NO_HYPERVISOR_START_LIMIT, kernel_start=start)
    loaded = load_modules(machine, modules, end, virt_base)
    boot = plan_boot(virt_base, loaded.end, 8 * nr_pages,
                     lambda v_end: pt_frames(virt_base, v_end), long_mode=True)
    check_fits(image, boot, nr_pages)
    _write_hypervisor_area(machine, nr_pages)
    mem = machine.memory
    mem.write_phys(boot.pfn(boot.p2m) * PAGE_SIZE, layout64.frame_list(nr_pages))
    mem.write_phys(boot.pfn(boot.start_info) * PAGE_SIZE,
                   start_info(boot, nr_pages, cmdline, loaded))
    for address, table in page_tables(boot).items():
        mem.write_phys(address, table)
    if notes.hypercall_page is not None:
        if not virt_base <= notes.hypercall_page <= end - PAGE_SIZE:
            raise UnsupportedImageError(f"{image.path}: HYPERCALL_PAGE "
                                        f"{notes.hypercall_page:#x} is outside the kernel")
        mem.write_phys(notes.hypercall_page - virt_base, xen64.hypercall_page_64())
    return boot


def load_kernel64(machine: Machine, image: ElfImage, notes: XenNotes,
                  nr_pages: int) -> tuple[int, int]:
    """Load every PT_LOAD segment at its p_paddr, as Xen's libelf does (elf_load_binary
    copies a segment to dest_base + p_paddr - pstart; elf_xen_addr_calc_check puts the
    kernel at virtual p_paddr + VIRT_BASE - ELF_PADDR_OFFSET): p_vaddr is not read.
    A Multiboot stub linked low beside a higher-half kernel (minikern64's .boot32,
    p_vaddr = p_paddr = 1 MiB) is loaded like the rest, at pseudo-physical 1 MiB and
    virtual VIRT_BASE + 1 MiB, where it never runs. A p_paddr at or above VIRT_BASE
    is a virtual address (the convention of kernels linked before ELF_PADDR_OFFSET,
    for which libelf takes VIRT_BASE as the offset). Return the kernel's virtual start
    and end (virt_kstart, virt_kend)."""
    virt_base = notes.virt_base or 0
    start, end = 1 << 64, 0
    for seg in image.segments:
        if seg.memsz == 0:
            continue
        offset = notes.paddr_offset if seg.paddr < virt_base else virt_base
        paddr = seg.paddr - offset
        if not 0 <= paddr <= nr_pages * PAGE_SIZE - seg.memsz:
            raise UnsupportedImageError(
                f"{image.path}: segment at physical {seg.paddr:#x} is outside the domain's "
                f"{nr_pages * PAGE_SIZE >> 20} MiB (VIRT_BASE {virt_base:#x})")
        data = image.data[seg.offset:seg.offset + seg.filesz]
        machine.memory.write_phys(paddr, data + bytes(seg.memsz - seg.filesz))
        start = min(start, virt_base + paddr)
        end = max(end, virt_base + paddr + seg.memsz)
    return start, end


def pt_frames(virt_base: int, v_end: int) -> int:
    """The bootstrap tables that map [VIRT_BASE, V_END): one L4 and, per level, one
    table for each span of that level the range touches."""
    return 1 + sum(len(_spans(virt_base, v_end, level)) for level in (1, 2, 3))


def _spans(start: int, end: int, level: int) -> range:
    shift = SPAN_SHIFT[level]
    return range(start >> shift, ((end - 1) >> shift) + 1)


def page_tables(boot: BootLayout) -> dict[int, bytes]:
    """The bootstrap tables by physical address, in Xen's order: the L4, the L3s, the
    L2s, the L1s."""
    first = boot.pfn(boot.page_tables)
    pfns: dict[tuple[int, int], int] = {(4, 0): first}
    for level in (3, 2, 1):
        for span in _spans(boot.virt_base, boot.v_end, level):
            pfns[level, span] = first + len(pfns)
    tables = {key: [0] * 512 for key in pfns}
    own = range(first, first + len(pfns))
    for vaddr in range(boot.virt_base, boot.v_end, PAGE_SIZE):
        pfn = boot.pfn(vaddr)
        leaf = pfn << PAGE_SHIFT | (L1_READ_ONLY if pfn in own else L1_FLAGS)
        tables[1, vaddr >> SPAN_SHIFT[1]][_index(vaddr, 1)] = leaf
        for level in (2, 3, 4):
            child = pfns[level - 1, vaddr >> SPAN_SHIFT[level - 1]]
            span = 0 if level == 4 else vaddr >> SPAN_SHIFT[level]
            tables[level, span][_index(vaddr, level)] = child << PAGE_SHIFT | UPPER_FLAGS
    return {pfns[key] << PAGE_SHIFT: struct.pack("<512Q", *entries)
            for key, entries in tables.items()}


def _index(vaddr: int, level: int) -> int:
    return (vaddr >> ENTRY_SHIFT[level]) & 511


def start_info(boot: BootLayout, nr_pages: int, cmdline: bytes,
               loaded: LoadedModules) -> bytes:
    """start_info's 64-bit layout (xen.h: unsigned long and xen_pfn_t are 8 bytes)."""
    return START_INFO_64.pack(magic=xen64.START_INFO_MAGIC_64,
                              **start_info_fields(boot, nr_pages, cmdline, loaded))


def _write_hypervisor_area(machine: Machine, nr_pages: int) -> None:
    """The M2P and the tables of Xen's slots, the iretq trampoline, and every upcall
    mask set."""
    mem = machine.memory
    mem.write_phys(layout64.M2P_FRAMES, layout64.frame_list(nr_pages))
    for address, table in layout64.hypervisor_tables(nr_pages).items():
        mem.write_phys(address, table)
    mem.write_phys(layout.TRAMPOLINE + layout64.IRETQ_OFFSET, layout64.IRETQ)
    mask_all_events(machine)


def enter_guest64(machine: Machine, boot: BootLayout, entry: int) -> None:
    """Long mode with paging on the L4 (already validated, so Xen's slots are in it),
    then the trampoline's iretq from CPL 0 to ENTRY at CPL 3 (XEN-ABI64.md 1.8, 2.1)."""
    cpu = machine.cpu
    cpu.set_descriptor_table(GDTR, layout64.GDT, layout64.GDT_LIMIT)
    cpu.write(CR3, boot.pfn(boot.page_tables) << PAGE_SHIFT)
    cpu.write(CR4, cpu.read(CR4) & ~CR4_FSGSBASE | CR4_PAE)
    cpu.write_msr(IA32_EFER, EFER_PV)
    cpu.write(CR0, CR0_PV)
    enter_cpl3_long_mode(cpu, machine.memory, layout64.RING_SWITCH,
                         cs=xen64.FLAT_KERNEL_CS64, rip=entry, ss=xen64.FLAT_KERNEL_SS64,
                         rsp=boot.stack + PAGE_SIZE, rflags=RFLAGS_AT_ENTRY)
    machine.run_slice(1)
    if cpu.cpl != GUEST_KERNEL_CPL or cpu.read(RIP) != entry:
        raise RuntimeError("the trampoline did not enter CPL 3 at the kernel's entry")
    for reg in (DS, ES, FS, GS):
        cpu.write(reg, 0)
    cpu.write(GPRS64_BY_NAME["rsi"], boot.start_info)
