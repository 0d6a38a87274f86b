"""Boot a PV kernel: build the domain, wire the hypervisor into the machine, and
leave the vCPU at the kernel's entry: in ring 1 for a 32-bit kernel, at CPL 3 in long
mode for a 64-bit one (on a Machine of that width)."""

from collections.abc import Callable
from functools import partial
from pathlib import Path

from pvtool.abi.pvtool import PVTOOL_NOTE_NAME
from pvtool.abi.xen64 import FLAT_KERNEL_SS64
from pvtool.errors import UnsupportedImageError
from pvtool.hv import layout, layout64
from pvtool.hv.blkback.xenbus import start_blkback
from pvtool.hv.bounce64 import load_segments
from pvtool.hv.builder import (
    CONSOLE_EVTCHN,
    STORE_EVTCHN,
    BootLayout,
    build_domain,
    enter_guest,
)
from pvtool.hv.builder64 import build_domain64, enter_guest64
from pvtool.hv.domain import PvDomain
from pvtool.hv.emulate import Emulator
from pvtool.hv.entry64 import Pv64Supervisor
from pvtool.hv.pagemodes import DEVICE_PAGES, PC_KERNEL_FOUR_LEVEL
from pvtool.hv.traps import PvSupervisor
from pvtool.hv.xenstore.daemon import start_xenstore
from pvtool.hv.xenstore.toolstack import DomainConfig
from pvtool.image.elf import ElfImage
from pvtool.image.pvtool_notes import parse_pvtool_notes
from pvtool.image.xen_notes import parse_xen_notes
from pvtool.machine.disk import DiskImage
from pvtool.machine.firmware.post import leave_devices
from pvtool.machine.pc import Machine
from pvtool.x86 import paging
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
    if machine.cpu.bits != image.bits:
        raise UnsupportedImageError(f"{image.path}: a {image.bits}-bit kernel needs a "
                                    f"{image.bits}-bit machine")
    leave_devices(machine)
    nr_pages = machine.ram_size // PAGE_SIZE
    machine.map_memory(layout.BASE, layout.MEMORY_SIZE)
    if image.bits == 64:
        machine.map_memory(layout64.MEMORY_BASE, layout64.MEMORY_SIZE)
        boot = build_domain64(machine, image, notes, nr_pages, cmdline, modules)
    else:
        boot = build_domain(machine, image, notes, nr_pages, cmdline, modules)
    ours = parse_pvtool_notes(image)
    pc_kernel = boot.long_mode and is_patched(image)
    domain = PvDomain(machine, base_mfn=boot.pfn(boot.page_tables), paging=_paging(boot),
                      rules=PC_KERNEL_FOUR_LEVEL if pc_kernel else None,
                      glue=boot.glue, superpages=boot.glue, console_mfn=boot.pfn(boot.console),
                      regs_block=ours.regs_block, site_ranges=ours.site_ranges,
                      glue_alias=(notes.virt_base or 0) if boot.glue else 0,
                      console_output=machine.output, console_input=console_input,
                      xen_console=xen_console or machine.output, trace=trace, vcpus=vcpus)
    if pc_kernel:  # its devices, as a trap-mode kernel's (I/O privilege: docs/ABI.md)
        for page in DEVICE_PAGES:
            domain.frames.share(page >> paging.PAGE_SHIFT, domain.domid)
    disk = machine.ata[0].drives[0]  # QEMU's -drive index 0, which --disk fills
    domain.xenstore = start_xenstore(domain, DomainConfig(
        name=image.path.stem, memory_kib=nr_pages * PAGE_SIZE // 1024,
        store_port=STORE_EVTCHN, store_mfn=boot.pfn(boot.xenstore),
        console_port=CONSOLE_EVTCHN, console_mfn=boot.pfn(boot.console),
        disk=disk.path if isinstance(disk, DiskImage) else None))
    if isinstance(disk, DiskImage):
        domain.blkback = start_blkback(domain, disk)
    if boot.long_mode:
        machine.attach(Pv64Supervisor(domain, ours.trap_sites))
        domain.scheduler.load_segments = partial(load_segments, domain)
    else:
        machine.attach(PvSupervisor(domain, Emulator(domain, ours.trap_sites,
                                                     ours.regs_block)))
    entry = notes.entry if notes.entry is not None else image.entry
    if boot.long_mode:
        start_vcpu64(domain, boot, entry)
    else:
        enter_guest(machine, boot, entry)
        domain.pagetables.new_baseptr(boot.pfn(boot.page_tables))
    return domain


def is_patched(image: ElfImage) -> bool:
    """Whether pvtool patched the kernel (it carries pvtool's notes): it then builds its
    page tables as the unmodified kernel did, in memory it maps writable, and a base's
    writable mappings of its tables are made read-only rather than refused."""
    return any(note.name == PVTOOL_NOTE_NAME for note in image.notes)


def _paging(boot: BootLayout) -> PagingMode:
    if boot.long_mode:
        return PagingMode.FOUR_LEVEL
    return PagingMode.PAE if boot.pae else PagingMode.TWO_LEVEL


def start_vcpu64(domain: PvDomain, boot: BootLayout, entry: int) -> None:
    """The toolstack pins the L4 (validating the bootstrap tables: the user bit on
    every level, Xen's slots filled), the vCPU takes it as its kernel base, and enters
    the kernel at CPL 3 on its boot stack, which is also its kernel stack
    (kernel_ss:sp, xg_dom_x86.c)."""
    l4 = boot.pfn(boot.page_tables)
    domain.pagetables.pin(l4, paging.levels(PagingMode.FOUR_LEVEL))
    domain.pagetables.new_baseptr(l4)
    enter_guest64(domain.machine, boot, entry)
    domain.kernel_ss, domain.kernel_sp = FLAT_KERNEL_SS64, boot.stack + PAGE_SIZE
    domain.vcpu.long_mode.kernel_sp = domain.kernel_sp

