"""Boot a PV kernel: build the domain, wire the hypervisor into the machine, and
leave the vCPU at the kernel's entry in ring 1."""

from collections.abc import Callable

from pvtool.errors import UnsupportedImageError
from pvtool.hv import layout
from pvtool.hv.builder import CONSOLE_EVTCHN, STORE_EVTCHN, build_domain, enter_guest
from pvtool.hv.console import ConsoleRing
from pvtool.hv.domain import Domain
from pvtool.hv.emulate import Emulator
from pvtool.hv.events import EventChannels
from pvtool.hv.frames import machine_frames
from pvtool.hv.gdt import Gdt
from pvtool.hv.pagetables import PageTables
from pvtool.hv.traps import PvSupervisor
from pvtool.image.elf import ElfImage
from pvtool.image.xen_notes import parse_xen_notes
from pvtool.machine.pc import Machine
from pvtool.x86.paging import PAGE_SIZE, PagingMode


def boot_pv_domain(machine: Machine, image: ElfImage, *, cmdline: bytes = b"",
                   trace: Callable[[str], None] | None = None) -> Domain:
    notes = parse_xen_notes(image)
    if notes is None:
        raise UnsupportedImageError(
            f"{image.path}: no Xen ELF notes, so it cannot run paravirtualized; patch it "
            "with `pvtool patch` or boot it on the bare PC with --native")
    nr_pages = machine.ram_size // PAGE_SIZE
    machine.map_memory(layout.BASE, layout.MEMORY_SIZE)
    boot = build_domain(machine, image, notes, nr_pages, cmdline)
    domain = Domain(machine=machine, nr_pages=nr_pages, frames=machine_frames(nr_pages),
                    console_output=machine.output, trace=trace)
    domain.gdt = Gdt(domain)
    domain.gdt.install_reserved()
    base = boot.pfn(boot.page_tables)
    mode = PagingMode.PAE if boot.pae else PagingMode.TWO_LEVEL
    domain.pagetables = PageTables(domain, base, mode, glue=boot.glue)
    domain.pagetables.hold_writable(boot.pfn(boot.console))  # the console backend's ring
    domain.console_ring = ConsoleRing(domain, boot.pfn(boot.console))
    domain.events = EventChannels(domain, {STORE_EVTCHN: None,
                                           CONSOLE_EVTCHN: domain.console_ring})
    domain.events.update_time()
    emulator = Emulator.for_image(domain, image)
    domain.regs_block = emulator.regs.block
    machine.attach(PvSupervisor(domain, emulator))
    enter_guest(machine, boot, notes.entry if notes.entry is not None else image.entry)
    domain.pagetables.new_baseptr(boot.pfn(boot.page_tables))
    return domain

