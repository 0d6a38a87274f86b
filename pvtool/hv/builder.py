"""The domain builder: lays a PV kernel out as Xen's does (xg_dom_x86.c) and starts
its vCPU in ring 1.

After the kernel (and its symbol table, when its BSD_SYMTAB note asks for it), each
page aligned, virtual = VIRT_BASE + pfn * 4096: the p2m list,
start_info, the xenstore page, the console ring page, the bootstrap page tables and one
boot-stack page; the mapping ends on a 4 MiB boundary with at least 512 KiB to spare.
A 2-level domain's tables are one L2 and its L1s; a PAE domain's (PAE_MODE "yes" or
"bimodal") are the L3, an L2 per gigabyte mapped plus always the one under L3 slot 3
(the hypervisor's slots live there), and an L1 per 2 MiB, in that order.
Machine frames equal pseudo-physical frames (docs/ABI.md explains why), so the p2m
list and the machine-to-phys table are identities.
"""

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pvtool.abi import pvtool as pvabi
from pvtool.abi import xen
from pvtool.abi.layouts import START_INFO
from pvtool.abi.xen import GUEST_KERNEL_RPL
from pvtool.errors import UnsupportedImageError
from pvtool.hv import layout
from pvtool.hv.multiboot_boot import LoadedModules, load_modules, multiboot_table
from pvtool.hv.note_checks import check_notes
from pvtool.image.bsd_symtab import symtab_block
from pvtool.image.elf import ElfImage
from pvtool.image.xen_notes import XenNotes
from pvtool.machine.cpu import CR0, CR3, CR4, CS, DS, EIP, ES, ESI, FS, GDTR, GS, SS
from pvtool.machine.pc import Machine
from pvtool.machine.rings import RingSwitch
from pvtool.x86 import paging
from pvtool.x86.paging import PAGE_SIZE, page_up
from pvtool.x86.registers import CR4_PAE

FOUR_MIB = 4 << 20
PAE_L1_SPAN = 2 << 20  # what one PAE L1 maps
L3_FLAGS = paging.P  # Xen allows no other flag in a PAE L3 entry
L2_FLAGS = paging.P | paging.RW | paging.A | paging.D | paging.US
L1_FLAGS = paging.P | paging.RW | paging.A | paging.D
L1_READ_ONLY = paging.P | paging.A
CR0_PV = 0x80010033  # PG WP NE ET MP PE: a deprivileged kernel runs with paging always on
EFLAGS_AT_ENTRY = 0x202  # IF set: the virtual IF is the upcall mask, which starts at 1
STORE_EVTCHN, CONSOLE_EVTCHN = 1, 2


@dataclass(frozen=True)
class BootLayout:
    """Virtual addresses of what the builder placed after the kernel."""

    virt_base: int
    kernel_end: int
    p2m: int
    start_info: int
    xenstore: int
    console: int
    page_tables: int
    nr_pt_frames: int
    stack: int
    v_end: int
    glue: bool = False  # a glue window was loaded (abi/pvtool.py)
    pae: bool = False  # 3-level page tables (today's Xen) instead of 2-level
    long_mode: bool = False  # a 64-bit domain, on 4-level tables (hv/builder64.py)

    def pfn(self, vaddr: int) -> int:
        return (vaddr - self.virt_base) // PAGE_SIZE


def plan_layout(virt_base: int, kernel_end: int, nr_pages: int, *,
                glue: bool = False, pae: bool = False) -> BootLayout:
    return plan_boot(virt_base, kernel_end, 4 * nr_pages,
                     lambda v_end: _pt_frames(virt_base, v_end, pae), glue=glue, pae=pae)


def plan_boot(virt_base: int, kernel_end: int, p2m_bytes: int,
              pt_frames: Callable[[int], int], **kind: bool) -> BootLayout:
    """Xen's order after the kernel, P2M_BYTES of p2m list first; PT_FRAMES(v_end)
    counts the page-table frames that map [VIRT_BASE, v_end), which they enlarge."""
    p2m = page_up(kernel_end)
    start_info = p2m + page_up(p2m_bytes)
    xenstore = start_info + PAGE_SIZE
    console = xenstore + PAGE_SIZE
    page_tables = console + PAGE_SIZE
    nr_frames = 1
    while True:
        stack = page_tables + nr_frames * PAGE_SIZE
        v_end = round_up(stack + PAGE_SIZE + xen.BOOT_MAPPING_SPARE, xen.BOOT_MAPPING_ALIGN)
        needed = pt_frames(v_end)
        if needed <= nr_frames:
            break
        nr_frames = needed
    return BootLayout(virt_base, kernel_end, p2m, start_info, xenstore, console,
                      page_tables, nr_frames, stack, v_end, **kind)


def _mapped_start(virt_base: int) -> int:
    return virt_base & ~(FOUR_MIB - 1)


def _pt_frames(virt_base: int, v_end: int, pae: bool) -> int:
    """Page-table frames that map [VIRT_BASE rounded down to 4 MiB, V_END)."""
    start = _mapped_start(virt_base)
    if not pae:
        return 1 + (v_end - start) // FOUR_MIB
    return 1 + len(_pae_l2_slots(start, v_end)) + (v_end - start) // PAE_L1_SPAN


def _pae_l2_slots(start: int, v_end: int) -> list[int]:
    """The L3 slots that get an L2: those mapped, and always the hypervisor's."""
    return sorted({v >> 30 for v in range(start, v_end, PAE_L1_SPAN)} | {xen.PAE_XEN_L3_SLOT})


def wants_pae(notes: XenNotes) -> bool:
    """Xen's choice from the PAE_MODE note: "yes" or "bimodal" (and "yes,...") build a
    PAE domain; no note or "no" a 2-level one."""
    return (notes.pae_mode or "no").split(",")[0] in ("yes", "bimodal")


def build_domain(machine: Machine, image: ElfImage, notes: XenNotes, nr_pages: int,
                 cmdline: bytes, modules: tuple[Path, ...] = ()) -> BootLayout:
    """Load the kernel, its modules and the boot structures; return the layout."""
    virt_base = notes.virt_base or 0
    pae = wants_pae(notes)
    glue = _load_glue(machine, image, nr_pages)
    if glue and pae:
        raise UnsupportedImageError(f"{image.path}: a glue window needs a 2-level domain "
                                    "(patched PAE kernels are not supported)")
    end = load_kernel(machine, image, virt_base, nr_pages)
    if notes.bsd_symtab:
        end = load_symtab(machine, image, virt_base, end, nr_pages)
    check_notes(image, notes, end, layout.PAE_BASE if pae else layout.BASE)
    if pae and end > layout.PAE_BASE:
        raise UnsupportedImageError(f"{image.path}: the kernel reaches {end:#x}, Xen's "
                                    "range on PAE")
    loaded = load_modules(machine, modules, end, virt_base)
    boot = plan_layout(virt_base, loaded.end, nr_pages, glue=bool(glue), pae=pae)
    check_fits(image, boot, nr_pages)
    _write_hypervisor_area(machine, nr_pages)
    _write_p2m(machine, boot, nr_pages)
    _write_start_info(machine, boot, nr_pages, cmdline, loaded)
    _write_multiboot_table(machine, boot, image.path, cmdline, loaded)
    if pae:
        _write_pae_page_tables(machine, boot)
    else:
        _write_page_tables(machine, boot)
    if notes.hypercall_page is not None:
        machine.memory.write_phys(_physical(image, notes.hypercall_page, virt_base),
                                  xen.hypercall_page_32())
    return boot


def check_fits(image: ElfImage, boot: BootLayout, nr_pages: int) -> None:
    if boot.pfn(boot.v_end) > nr_pages:
        raise UnsupportedImageError(f"{image.path}: the kernel does not fit in the domain's "
                                    f"{nr_pages * PAGE_SIZE >> 20} MiB")


def enter_guest(machine: Machine, boot: BootLayout, entry: int) -> None:
    """Start the kernel at ENTRY in ring 1 on the bootstrap tables and boot stack, with
    ESI = start_info (XEN-ABI.md, "Initial vCPU")."""
    enter_ring1(machine, entry=entry, cr3=boot.pfn(boot.page_tables) * PAGE_SIZE,
                cr4=CR4_PAE if boot.pae else 0, esp=boot.stack + PAGE_SIZE,
                eflags=EFLAGS_AT_ENTRY)
    machine.cpu.write(ESI, boot.start_info)


def enter_ring1(machine: Machine, *, entry: int, cr3: int, cr4: int, esp: int,
                eflags: int) -> None:
    """Paging on with CR3, Xen's GDT, then the trampoline's iretd from ring 0 to ENTRY
    in ring 1 on ESP, with flat ring-1 data segments. The PV boot and the
    trap-and-emulate boot both start their kernel here."""
    cpu = machine.cpu
    cpu.set_descriptor_table(GDTR, layout.GDT, layout.GDT_LIMIT)
    cpu.write(CR3, cr3)
    cpu.write(CR4, cr4)
    cpu.write(CR0, CR0_PV)
    cpu.write(CS, layout.HYPERVISOR_CS)
    cpu.write(SS, layout.HYPERVISOR_DS)
    RingSwitch(cpu, machine.memory, layout.RING_SWITCH).enter(
        0, GUEST_KERNEL_RPL, cs=xen.FLAT_RING1_CS, eip=entry, ss=xen.FLAT_RING1_SS,
        esp=esp, eflags=eflags)
    machine.run_slice(1)
    if cpu.cpl != GUEST_KERNEL_RPL or cpu.read(EIP) != entry:
        raise RuntimeError("the trampoline did not enter ring 1 at the kernel's entry")
    for reg in (DS, ES, FS, GS):
        cpu.write(reg, xen.FLAT_RING1_DS)


def _in_glue_window(seg) -> bool:
    return layout.GLUE_WINDOW <= seg.vaddr < layout.GLUE_WINDOW + pvabi.GLUE_WINDOW_SIZE


def _load_glue(machine: Machine, image: ElfImage,
               nr_pages: int) -> list[tuple[int, bool] | None]:
    """Load the segments linked in the glue window at their physical addresses (the
    low-memory hole) and map them in the window's page table."""
    pages: list[tuple[int, bool] | None] = []
    for seg in sorted(image.segments, key=lambda s: s.vaddr):
        if not _in_glue_window(seg) or seg.memsz == 0:
            continue
        if not pvabi.GLUE_PHYS_BASE <= seg.paddr <= pvabi.GLUE_PHYS_LIMIT - seg.memsz:
            raise UnsupportedImageError(
                f"{image.path}: glue segment at physical {seg.paddr:#x} is outside the "
                "low-memory hole")
        first = (seg.vaddr - layout.GLUE_WINDOW) // PAGE_SIZE
        data = image.data[seg.offset:seg.offset + seg.filesz]
        machine.memory.write_phys(seg.paddr, data + bytes(seg.memsz - seg.filesz))
        pages += [None] * (first - len(pages))  # a gap stays unmapped
        first_frame, count = seg.paddr // PAGE_SIZE, -(-seg.memsz // PAGE_SIZE)
        pages += [(first_frame + i, seg.writable) for i in range(count)]
    if pages:
        machine.memory.write_phys(layout.GLUE_L1, layout.glue_l1(pages))
    return pages


def _physical(image: ElfImage, vaddr: int, virt_base: int) -> int:
    """Where the image's VADDR was loaded: the glue window's own placement, else
    pseudo-physical = virtual - VIRT_BASE."""
    for seg in image.segments:
        if _in_glue_window(seg) and seg.vaddr <= vaddr < seg.vaddr + seg.memsz:
            return seg.paddr + vaddr - seg.vaddr
    return vaddr - virt_base


def load_kernel(machine: Machine, image: ElfImage, virt_base: int, nr_pages: int) -> int:
    end = 0
    for seg in image.segments:
        if seg.memsz == 0 or _in_glue_window(seg):
            continue
        paddr = seg.vaddr - virt_base
        if seg.vaddr < virt_base or paddr + seg.memsz > nr_pages * PAGE_SIZE:
            raise UnsupportedImageError(
                f"{image.path}: segment at {seg.vaddr:#x} is outside the domain's memory "
                f"(VIRT_BASE {virt_base:#x})")
        data = image.data[seg.offset:seg.offset + seg.filesz]
        machine.memory.write_phys(paddr, data + bytes(seg.memsz - seg.filesz))
        end = max(end, seg.vaddr + seg.memsz)
    return end


def load_symtab(machine: Machine, image: ElfImage, virt_base: int, end: int,
                 nr_pages: int) -> int:
    """XEN_ELFNOTE_BSD_SYMTAB: the symbol table right after the kernel, the kernel's
    end moved past it (libelf-dominfo.c, elf_xen_addr_calc_check: virt_kend =
    bsd_symtab_pend); return the new end."""
    block = symtab_block(image)
    if block is None:
        return end
    start = round_up(end, image.elf_class.word_size)
    if start - virt_base + len(block) > nr_pages * PAGE_SIZE:
        raise UnsupportedImageError(f"{image.path}: its symbol table does not fit in the "
                                    f"domain's {nr_pages * PAGE_SIZE >> 20} MiB")
    machine.memory.write_phys(start - virt_base, block)
    return start + len(block)


def _write_hypervisor_area(machine: Machine, nr_pages: int) -> None:
    mem = machine.memory
    m2p_pages = -(-4 * nr_pages // PAGE_SIZE)
    mem.write_phys(layout.M2P, struct.pack(f"<{nr_pages}I", *range(nr_pages)))
    mem.write_phys(layout.M2P_L1, layout.m2p_l1(m2p_pages))
    mem.write_phys(layout.PRIVATE_L1, layout.private_l1())
    mem.write_phys(layout.PAE_M2P_L1, layout.pae_m2p_l1(m2p_pages))
    mem.write_phys(layout.PAE_PRIVATE_L1, layout.pae_private_l1())
    mem.write_phys(layout.TRAMPOLINE + layout.IRETD_OFFSET, layout.IRETD)
    mask_all_events(machine)


def mask_all_events(machine: Machine) -> None:
    """Every vCPU's upcall mask starts at 1: events masked."""
    for vcpu in range(32):
        machine.memory.write_phys(layout.SHARED_INFO + 64 * vcpu + 1, b"\x01")


def _write_p2m(machine: Machine, boot: BootLayout, nr_pages: int) -> None:
    machine.memory.write_phys(boot.pfn(boot.p2m) * PAGE_SIZE,
                              struct.pack(f"<{nr_pages}I", *range(nr_pages)))


def _write_start_info(machine: Machine, boot: BootLayout, nr_pages: int,
                      cmdline: bytes, loaded: LoadedModules) -> None:
    info = START_INFO.pack(
        magic=xen.START_INFO_MAGIC_32P if boot.pae else xen.START_INFO_MAGIC_32,
        nr_pages=nr_pages, shared_info=layout.SHARED_INFO,
        flags=0,  # a domU: neither SIF_PRIVILEGED nor SIF_INITDOMAIN
        store_mfn=boot.pfn(boot.xenstore), store_evtchn=STORE_EVTCHN,
        console_mfn=boot.pfn(boot.console), console_evtchn=CONSOLE_EVTCHN,
        pt_base=boot.page_tables, nr_pt_frames=boot.nr_pt_frames, mfn_list=boot.p2m,
        mod_start=loaded.mod_start, mod_len=loaded.mod_len,
        cmd_line=cmdline[:xen.MAX_GUEST_CMDLINE - 1])
    machine.memory.write_phys(boot.pfn(boot.start_info) * PAGE_SIZE, info)


def _write_multiboot_table(machine: Machine, boot: BootLayout, image_path: Path,
                           cmdline: bytes, loaded: LoadedModules) -> None:
    """pvtool's Multiboot table in the start_info page's tail (hv/multiboot_boot.py)."""
    page = boot.pfn(boot.start_info) * PAGE_SIZE
    machine.memory.write_phys(page + pvabi.START_INFO_MULTIBOOT,
                              multiboot_table(image_path, cmdline, loaded, page))


def _write_page_tables(machine: Machine, boot: BootLayout) -> None:
    """One L2 and the L1s mapping [VIRT_BASE rounded down to 4 MiB, v_end); the
    page-table frames themselves read-only."""
    l2_pfn = boot.pfn(boot.page_tables)
    first_slot = boot.virt_base >> 22
    l2 = [0] * 1024
    for i in range(boot.nr_pt_frames - 1):
        l1_pfn = l2_pfn + 1 + i
        l2[first_slot + i] = l1_pfn * PAGE_SIZE | L2_FLAGS
        l1 = _l1_entries(boot, (first_slot + i) * FOUR_MIB, 1024)
        machine.memory.write_phys(l1_pfn * PAGE_SIZE, struct.pack("<1024I", *l1))
    for slot, pde in layout.hypervisor_slots(boot.glue).entries.items():
        l2[slot] = pde
    machine.memory.write_phys(l2_pfn * PAGE_SIZE, struct.pack("<1024I", *l2))


def _l1_entries(boot: BootLayout, first: int, count: int) -> list[int]:
    """COUNT L1 entries from virtual address FIRST: the domain's frames in order from
    VIRT_BASE to v_end, the page-table frames read-only."""
    pt_pfns = range(boot.pfn(boot.page_tables), boot.pfn(boot.page_tables) + boot.nr_pt_frames)
    entries = []
    for j in range(count):
        vaddr = first + j * PAGE_SIZE
        pfn = (vaddr - boot.virt_base) // PAGE_SIZE
        mapped = boot.virt_base <= vaddr < boot.v_end
        flags = L1_READ_ONLY if pfn in pt_pfns else L1_FLAGS
        entries.append(pfn * PAGE_SIZE | flags if mapped else 0)
    return entries


def _write_pae_page_tables(machine: Machine, boot: BootLayout) -> None:
    """The L3, its L2s and the L1s mapping [VIRT_BASE rounded down to 4 MiB, v_end),
    as xg_dom_x86.c lays out a PAE domain; the L2 under slot 3 gets the hypervisor's
    slots."""
    mem = machine.memory
    start = _mapped_start(boot.virt_base)
    l3_pfn = boot.pfn(boot.page_tables)
    l2_slots = _pae_l2_slots(start, boot.v_end)
    l2_pfn = {slot: l3_pfn + 1 + i for i, slot in enumerate(l2_slots)}
    l2s = {slot: [0] * 512 for slot in l2_slots}
    next_l1 = l3_pfn + 1 + len(l2_slots)
    for vaddr in range(start, boot.v_end, PAE_L1_SPAN):
        l2s[vaddr >> 30][(vaddr >> 21) & 511] = next_l1 * PAGE_SIZE | L2_FLAGS
        mem.write_phys(next_l1 * PAGE_SIZE, struct.pack("<512Q", *_l1_entries(boot, vaddr, 512)))
        next_l1 += 1
    for slot, pde in layout.pae_hypervisor_slots().entries.items():
        l2s[xen.PAE_XEN_L3_SLOT][slot] = pde
    l3 = [0] * 512
    for slot in l2_slots:
        l3[slot] = l2_pfn[slot] * PAGE_SIZE | L3_FLAGS
        mem.write_phys(l2_pfn[slot] * PAGE_SIZE, struct.pack("<512Q", *l2s[slot]))
    mem.write_phys(l3_pfn * PAGE_SIZE, struct.pack("<512Q", *l3))


def round_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment
