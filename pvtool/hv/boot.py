"""Boot a PV kernel: build the domain, wire the hypervisor into the machine, and
leave the vCPU at the kernel's entry in ring 1."""

from collections.abc import Callable
from pathlib import Path

from pvtool.errors import UnsupportedImageError
from pvtool.hv import layout
from pvtool.hv.blkback.xenbus import start_blkback
from pvtool.hv.builder import CONSOLE_EVTCHN, STORE_EVTCHN, build_domain, enter_guest
from pvtool.hv.domain import PvDomain
from pvtool.hv.emulate import Emulator
from pvtool.hv.traps import PvSupervisor
from pvtool.hv.xenstore.daemon import start_xenstore
from pvtool.hv.xenstore.toolstack import DomainConfig
from pvtool.image.elf import ElfImage
from pvtool.image.pvtool_notes import parse_pvtool_notes
from pvtool.image.xen_notes import parse_xen_notes
from pvtool.machine.disk import DiskImage
from pvtool.machine.firmware.post import leave_devices
from pvtool.machine.pc import Machine
from pvtool.x86.paging import PAGE_SIZE, PagingMode


def boot_pv_domain(machine: Machine, image: ElfImage, *, cmdline: bytes = b"",
                   modules: tuple[Path, ...] = (), console_input: bytes = b"",
                   trace: Callable[[str], None] | None = None,
                   xen_console: Callable[[bytes], None] | None = None,
                   vcpus: int = 1) -> PvDomain:
    """CONSOLE_INPUT goes into the console ring's in[] (hv/console.py), the same bytes
    the serial port gets. The ring's output goes to the machine's output, as the
    serial line's does natively; console_io's to XEN_CONSOLE (default: the same)."""
    notes = parse_xen_notes(image)
    if notes is None:
        raise UnsupportedImageError(
            f"{image.path}: no Xen ELF notes, so it cannot run paravirtualized; patch it "
            "with `pvtool patch` or boot it on the bare PC with --native")
    leave_devices(machine)
    nr_pages = machine.ram_size // PAGE_SIZE
    machine.map_memory(layout.BASE, layout.MEMORY_SIZE)
    boot = build_domain(machine, image, notes, nr_pages, cmdline, modules)
    ours = parse_pvtool_notes(image)
    domain = PvDomain(machine, base_mfn=boot.pfn(boot.page_tables),
                      paging=PagingMode.PAE if boot.pae else PagingMode.TWO_LEVEL,
                      glue=boot.glue, superpages=boot.glue, console_mfn=boot.pfn(boot.console),
                      regs_block=ours.regs_block, site_ranges=ours.site_ranges,
                      glue_alias=(notes.virt_base or 0) if boot.glue else 0,
                      console_output=machine.output, console_input=console_input,
                      xen_console=xen_console or machine.output, trace=trace, vcpus=vcpus)
    disk = machine.ata[0].drives[0]  # QEMU's -drive index 0, which --disk fills
    domain.xenstore = start_xenstore(domain, DomainConfig(
        name=image.path.stem, memory_kib=nr_pages * PAGE_SIZE // 1024,
        store_port=STORE_EVTCHN, store_mfn=boot.pfn(boot.xenstore),
        console_port=CONSOLE_EVTCHN, console_mfn=boot.pfn(boot.console),
        disk=disk.path if isinstance(disk, DiskImage) else None))
    if isinstance(disk, DiskImage):
        domain.blkback = start_blkback(domain, disk)
    emulator = Emulator(domain, ours.trap_sites, ours.regs_block)
    machine.attach(PvSupervisor(domain, emulator))
    enter_guest(machine, boot, notes.entry if notes.entry is not None else image.entry)
    domain.pagetables.new_baseptr(boot.pfn(boot.page_tables))
    return domain

