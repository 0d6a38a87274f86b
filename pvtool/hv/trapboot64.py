"""The hypervisor's frames of a 64-bit trap-mode domain and the state its kernel
starts in (hv/trapmode64.py says why it starts at the 64-bit entry).

Beside Xen's slots (hv/layout64.py), the hypervisor keeps two things in frames of its
own, above layout64's: the boot tables, which map low RAM at 0 and at the kernel's
link base as a Multiboot stub's would (entry.S's shape, with 4 KiB pages and every
level user-accessible, since the kernel runs at CPL 3), and the pool hv/userview64.py
builds user mode's tables in.
"""

import struct

from pvtool.abi import xen64
from pvtool.hv import layout, layout64
from pvtool.hv.builder import CR0_PV
from pvtool.hv.errors import DomainCrash
from pvtool.machine.context import SegmentCache
from pvtool.machine.cpu import CR0, CR3, CR4, GDTR, RIP
from pvtool.machine.loader import KernelImage
from pvtool.machine.pc import Machine
from pvtool.machine.rings import enter_cpl3_long_mode
from pvtool.x86 import paging
from pvtool.x86.descriptors import SegmentDescriptor
from pvtool.x86.msrs import EFER_LMA, EFER_LME, EFER_NXE, EFER_SCE, IA32_EFER
from pvtool.x86.paging import PAGE_SHIFT, PAGE_SIZE
from pvtool.x86.registers import CR4_PAE

ENTRIES = 512
BOOT_TABLES = layout64.MEMORY_BASE + layout64.MEMORY_SIZE  # hypervisor frames
BOOT_L4, BOOT_L3_LOW, BOOT_L3_HIGH, BOOT_L2 = (BOOT_TABLES + i * PAGE_SIZE for i in range(4))
BOOT_L1 = BOOT_TABLES + 4 * PAGE_SIZE
MAX_BOOT_L1 = ENTRIES  # the first GiB at most, as entry.S maps
USER_VIEW = BOOT_L1 + MAX_BOOT_L1 * PAGE_SIZE  # hv/userview64.py's pool
USER_VIEW_PAGES = 64
BOOT_FLAGS = paging.P | paging.RW | paging.US | paging.A | paging.D
EFER_TRAP = EFER_LME | EFER_LMA | EFER_SCE | EFER_NXE
RFLAGS_AT_ENTRY = 1 << 1  # IF clear, as the stub leaves it (cli)


def write_hypervisor_frames(machine: Machine, kernbase: int) -> None:
    """Map and fill the hypervisor's frames: Xen's slots, the trampoline, the boot
    tables for a kernel linked KERNBASE above its physical address."""
    machine.map_memory(layout.BASE, layout.MEMORY_SIZE)
    machine.map_memory(layout64.MEMORY_BASE, USER_VIEW + USER_VIEW_PAGES * PAGE_SIZE
                       - layout64.MEMORY_BASE)
    _write_hypervisor_area(machine)
    nr_l1 = min(-(-machine.ram_size // (ENTRIES * PAGE_SIZE)), MAX_BOOT_L1)
    _write_boot_tables(machine, kernbase, nr_l1)


def kernel_base(image: KernelImage) -> int:
    """KERNBASE: how far above its physical address the entry's segment is linked."""
    for seg in image.segments:
        if seg.vaddr <= image.entry < seg.vaddr + seg.memsz:
            return seg.vaddr - seg.paddr
    raise DomainCrash(f"the 64-bit entry {image.entry:#x} is in no segment")


def _write_hypervisor_area(machine: Machine) -> None:
    mem = machine.memory
    nr_pages = machine.ram_size // PAGE_SIZE
    mem.write_phys(layout64.M2P_FRAMES, layout64.frame_list(nr_pages))
    for address, table in layout64.hypervisor_tables(nr_pages).items():
        mem.write_phys(address, table)
    mem.write_phys(layout.TRAMPOLINE + layout64.IRETQ_OFFSET, layout64.IRETQ)


def _write_boot_tables(machine: Machine, kernbase: int, nr_l1: int) -> None:
    """Low RAM at 0 and at KERNBASE through one L2 (entry.S's shape, 4 KiB pages, every
    level user-accessible), Xen's slots in the L4."""
    mem, ram_pages = machine.memory, machine.ram_size // PAGE_SIZE
    l4 = {0: BOOT_L3_LOW, _index(kernbase, 4): BOOT_L3_HIGH}
    entries4 = {slot: table | BOOT_FLAGS for slot, table in l4.items()}
    entries4 |= layout64.xen_l4_entries()
    mem.write_phys(BOOT_L4, _table(entries4))
    mem.write_phys(BOOT_L3_LOW, _table({0: BOOT_L2 | BOOT_FLAGS}))
    mem.write_phys(BOOT_L3_HIGH, _table({_index(kernbase, 3): BOOT_L2 | BOOT_FLAGS}))
    mem.write_phys(BOOT_L2, _table({i: BOOT_L1 + i * PAGE_SIZE | BOOT_FLAGS
                                    for i in range(nr_l1)}))
    for i in range(nr_l1):
        first = i * ENTRIES
        frames = range(first, min(first + ENTRIES, ram_pages))
        mem.write_phys(BOOT_L1 + i * PAGE_SIZE,
                       _table({f - first: f << PAGE_SHIFT | BOOT_FLAGS for f in frames}))


def _index(vaddr: int, level: int) -> int:
    return vaddr >> (PAGE_SHIFT + 9 * (level - 1)) & (ENTRIES - 1)


def _table(entries: dict[int, int]) -> bytes:
    return struct.pack(f"<{ENTRIES}Q", *(entries.get(i, 0) for i in range(ENTRIES)))


def enter_cpl3(machine: Machine, entry: int, stack: int) -> None:
    """Long mode on the boot tables, then the trampoline's iretq to ENTRY at CPL 3 on
    Xen's flat selectors, until the kernel loads its own."""
    cpu = machine.cpu
    cpu.set_descriptor_table(GDTR, layout64.GDT, layout64.GDT_LIMIT)
    cpu.write(CR3, BOOT_L4)
    cpu.write(CR4, CR4_PAE)  # FSGSBASE clear: the kernel's CR4 is virtual
    cpu.write_msr(IA32_EFER, EFER_TRAP)
    cpu.write(CR0, CR0_PV)
    cpu.load_segments(_hypervisor_segment(layout64.HYPERVISOR_CS),
                      _hypervisor_segment(layout64.HYPERVISOR_DS), efer=EFER_TRAP)
    enter_cpl3_long_mode(cpu, machine.memory, layout64.RING_SWITCH,
                         cs=xen64.FLAT_KERNEL_CS64, rip=entry, ss=xen64.FLAT_KERNEL_SS64,
                         rsp=stack, rflags=RFLAGS_AT_ENTRY)
    machine.run_slice(1)
    if cpu.cpl != 3 or cpu.read(RIP) != entry:
        raise RuntimeError("the trampoline did not enter CPL 3 at the kernel's entry")


def _hypervisor_segment(selector: int) -> SegmentCache:
    """The Multiboot loader left a 32-bit CPU: the trampoline runs on 64-bit segments."""
    raw = layout64.reserved_gdt_entries()[selector >> 3]
    return SegmentCache.of(selector, SegmentDescriptor.decode(struct.pack("<Q", raw)))

