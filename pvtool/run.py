"""`pvtool run`: choose a mode, build the machine, and own the one run loop.

Time is virtual: the loop runs instruction-count slices and stops on the guest's own
request, on a limit (--max-insns, --timeout), or when the guest can never run again.
"""

import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from pvtool.errors import UnsupportedImageError, UsageError
from pvtool.image.elf import load_elf, require_32bit
from pvtool.image.flat import load_flat
from pvtool.image.xen_notes import parse_xen_notes
from pvtool.interrupts import held
from pvtool.machine.ata import MAX_DISKS
from pvtool.machine.disk import DiskImage
from pvtool.machine.exits import Exit
from pvtool.machine.keys import key_events
from pvtool.machine.loader import KernelImage
from pvtool.machine.native import boot_bare_pc
from pvtool.machine.pc import DEFAULT_RAM, Machine
from pvtool.machine.profile import Profile
from pvtool.machine.screen import TextScreen, read_screen
from pvtool.machine.stop import Stop, StopKind, registers_at_stop
from pvtool.machine.watchdog import Watchdog

if TYPE_CHECKING:
    from pvtool.hv.scheduler import VcpuScheduler

SLICE_INSNS = 1_000_000
# The PCs native mode presents, by the QEMU that judges them, and their width.
PCS = {"i386": 32, "x86_64": 64}


class Mode(Enum):
    AUTO = "auto"
    NATIVE = "native"
    PV = "pv"
    TRAP = "trap"  # unpatched, deprivileged, trap-and-emulate (hv/trapmode.py)


@dataclass(frozen=True)
class RunOptions:
    mode: Mode = Mode.AUTO
    max_insns: int | None = None
    timeout: float | None = None
    ram_size: int = DEFAULT_RAM
    cmdline: bytes = b""
    input_data: bytes = b""
    disks: tuple[Path | None, ...] = ()  # IDE disks by QEMU's -drive index (0-3)
    snapshot: bool = False  # no disk file is ever written
    modules: tuple[Path, ...] = ()
    trace: Callable[[str], None] | None = None  # hypercalls, as they happen
    trace_interrupts: Callable[[str], None] | None = None  # deliveries (QEMU's -d int)
    keys: str = ""  # typed on the keyboard (machine/keys.py says how)
    host_tsc: bool = False  # rdtsc reads the host's TSC, not virtual time (benchmarks)
    xen_console: Callable[[bytes], None] | None = None  # console_io; None: the output's
    pc: str | None = None  # native: a PCS name; None: the image's width chooses
    profile: bool = False  # where the host time went, by exit kind (machine/profile.py)
    vcpus: int = 1  # PV: the domain's vCPUs (hv/scheduler.py)


@dataclass
class RunResult:
    mode: Mode
    stop: Stop
    wall_seconds: float
    slices: int
    insns_upper_bound: int
    exits: Counter = field(default_factory=Counter)
    hypercalls: Counter = field(default_factory=Counter)
    uart_bytes: int = 0
    # --trap: the sensitive instructions that ran untrapped (hv/trapmode.SensitiveUse)
    sensitive: list = field(default_factory=list)
    registers: dict = field(default_factory=dict)  # the CPU's, when the run stopped
    screen: TextScreen | None = None  # native mode: the text screen at the end
    profile: Profile | None = None  # --profile's figures

    def to_dict(self) -> dict:
        return {
            "mode": self.mode.value,
            "stop": {"kind": self.stop.kind.value, "reason": self.stop.reason,
                     "ip": self.stop.ip, "eip": self.stop.ip, "symbol": self.stop.symbol,
                     "guest_code": self.stop.code, "guest_chose": self.stop.guest_chose},
            "registers": self.registers,
            "wall_seconds": round(self.wall_seconds, 6),
            "slices": self.slices,
            "insns_upper_bound": self.insns_upper_bound,
            "exits": dict(sorted(self.exits.items())),
            "hypercalls": dict(sorted(self.hypercalls.items())),
            "uart_bytes": self.uart_bytes,
            "sensitive": [use.to_dict() for use in self.sensitive],
            **({"screen": self.screen.to_dict()} if self.screen else {}),
            **({"profile": self.profile.to_dict()} if self.profile else {}),
        }


def check_disks(disks: tuple[Path, ...], snapshot: bool) -> None:
    """Refuse a disk request that cannot be what the user meant: more disks than the
    PC has places, one file behind two places (each would cache and write it apart),
    or --snapshot with no disk to protect."""
    if len(disks) > MAX_DISKS:
        raise UsageError(f"--disk given {len(disks)} times: the PC has {MAX_DISKS} IDE places")
    seen: dict[Path, Path] = {}
    for disk in disks:
        first = seen.setdefault(disk.resolve(), disk)
        if first is not disk:
            raise UsageError(f"--disk {disk}: the same file as --disk {first}; give each "
                             "disk once")
    if snapshot and not disks:
        raise UsageError("--snapshot protects --disk files, and none was given")


def check_vcpus(vcpus: int, mode: Mode) -> None:
    """A PV domain has 1 to 32 vCPUs, as many as shared_info has vcpu_info slots
    (XEN_LEGACY_MAX_VCPUS); the bare PC and trap-and-emulate have one CPU."""
    from pvtool.abi.xen import XEN_LEGACY_MAX_VCPUS

    if not 1 <= vcpus <= XEN_LEGACY_MAX_VCPUS:
        raise UsageError(f"--vcpus {vcpus}: a PV domain has 1 to {XEN_LEGACY_MAX_VCPUS} "
                         "vCPUs (shared_info's vcpu_info slots)")
    if vcpus != 1 and mode in (Mode.NATIVE, Mode.TRAP):
        raise UsageError(f"--vcpus {vcpus}: only a PV domain has more than one vCPU; "
                         f"--{mode.value} runs one CPU")


def choose_mode(requested: Mode) -> Mode:
    """AUTO runs the image paravirtualized; the PV boot refuses one without Xen notes
    (and says to patch it or use --native)."""
    return Mode.PV if requested is Mode.AUTO else requested


def run_image(path: Path, options: RunOptions, output: Callable[[bytes], None]) -> RunResult:
    """Boot the image at PATH in the chosen mode and run it until it stops."""
    check_vcpus(options.vcpus, options.mode)
    image = _load_image(path, options.mode)
    mode = choose_mode(options.mode)
    bits = PCS[options.pc] if options.pc else image.bits
    keys = key_events(options.keys)
    disks: list[DiskImage | None] = []
    try:
        for disk_path in options.disks:
            disks.append(DiskImage.open(disk_path, snapshot=options.snapshot)
                         if disk_path else None)
        machine = Machine(ram_size=options.ram_size, output=output,
                          input_data=options.input_data, disks=disks, keys=keys,
                          host_tsc=options.host_tsc, bits=bits,
                          native_cpu=mode is Mode.NATIVE,
                          profile=Profile() if options.profile else None)
        domain = _boot(machine, image, mode, options)
        machine.supervisor.delivery.trace = options.trace_interrupts
        scheduler = domain.scheduler if mode is Mode.PV and domain.scheduler.active else None
        result = _run_loop(machine, mode, options, scheduler)
    finally:
        with held():  # a second Ctrl-C waits until every disk is flushed and closed
            for disk in disks:
                if disk is not None:
                    disk.close()  # flushed: the guest's writes reach the file, whatever happened
    result.stop = _locate(result.stop, image)
    if mode is Mode.NATIVE:
        result.screen = read_screen(machine.memory, machine.vga)
    if mode is Mode.TRAP:
        result.sensitive = domain.sensitive_report()
    elif domain is not None:
        result.hypercalls = domain.hypercall_counts
    return result


def _load_image(path: Path, requested: Mode) -> KernelImage:
    """The kernel at PATH: an ELF, or for the Multiboot boots (native, trap) also a
    flat binary that QEMU's -kernel boots. Its width chooses the PC: a 64-bit ELF
    boots natively on qemu-system-x86_64's, anything else on qemu-system-i386's; a
    64-bit ELF with Xen notes boots as a 64-bit PV domain."""
    flat = load_flat(path) if requested in (Mode.NATIVE, Mode.TRAP) else None
    image = flat or load_elf(path)
    pv_domain = requested in (Mode.AUTO, Mode.PV) and parse_xen_notes(image)
    if flat is None and not (requested in (Mode.NATIVE, Mode.TRAP) or pv_domain):
        require_32bit(image)  # PV without notes takes 32-bit only
    if flat is None and requested in (Mode.NATIVE, Mode.TRAP) and parse_xen_notes(image):
        raise UnsupportedImageError(
            f"{path}: a PV image (it has Xen ELF notes: patched, or written for Xen), "
            f"which boots only paravirtualized; drop --{requested.value}")
    return image


def _boot(machine: Machine, image: KernelImage, mode: Mode, options: RunOptions):
    """Load the guest for MODE; the PV domain, the trap-mode guest, or None for a
    native boot."""
    if mode is Mode.TRAP and image.bits == 64:
        from pvtool.hv.trapmode64 import boot_trap_domain64

        return boot_trap_domain64(machine, image, cmdline=options.cmdline,
                                  modules=options.modules, trace=options.trace)
    if mode is Mode.TRAP:
        from pvtool.hv.trapmode import boot_trap_domain

        return boot_trap_domain(machine, image, cmdline=options.cmdline,
                                modules=options.modules, trace=options.trace)
    if mode is Mode.NATIVE:
        boot_bare_pc(machine, image, cmdline=options.cmdline, modules=options.modules)
        return None
    from pvtool.hv.boot import boot_pv_domain

    return boot_pv_domain(machine, image, cmdline=options.cmdline, modules=options.modules,
                          console_input=options.input_data, trace=options.trace,
                          xen_console=options.xen_console, vcpus=options.vcpus)


def _run_loop(machine: Machine, mode: Mode, options: RunOptions,
              scheduler: "VcpuScheduler | None" = None) -> RunResult:
    """SCHEDULER, for a domain of several vCPUs, picks the one each slice runs; while
    none can run it moves time on instead, one wait a turn, under --timeout too: a
    Watchdog ends the slice running at the deadline (machine/watchdog.py)."""
    started = time.perf_counter()
    deadline = started + options.timeout if options.timeout else None
    if machine.profile is not None:
        machine.profile.start()
    with Watchdog(deadline, machine.end_slice) if deadline else nullcontext():
        slices, executed = _run_slices(machine, options, scheduler, deadline)
    if machine.profile is not None:
        machine.profile.finish()
    return RunResult(mode=mode, stop=machine.stop,
                     wall_seconds=time.perf_counter() - started, slices=slices,
                     insns_upper_bound=executed, exits=machine.exits,
                     uart_bytes=machine.uart.bytes_written,
                     registers=registers_at_stop(machine.cpu), profile=machine.profile)


def _run_slices(machine: Machine, options: RunOptions, scheduler: "VcpuScheduler | None",
                deadline: float | None) -> tuple[int, int]:
    """Slices until the machine stops: (slices run, instructions at most executed)."""
    budget = options.max_insns
    slices = executed = 0
    while machine.stop is None:
        if scheduler is None or scheduler.schedule():
            machine.supervisor.take_interrupt(machine.irqs)
            count = _slice_length(machine, budget, executed)
            if count <= 0:
                machine.request_stop(Stop(StopKind.INSN_LIMIT,
                                          f"ran past --max-insns {budget}",
                                          machine.cpu.ip))
                break
            machine.run_slice(count)
            slices += 1
            executed += count
            machine.advance(count)
            if machine.stop is None and machine.halted():
                _wait_for_interrupt(machine)
        if deadline is not None and machine.stop is None and time.perf_counter() > deadline:
            machine.request_stop(Stop(StopKind.TIMEOUT,
                                      f"ran past --timeout {options.timeout:g} s",
                                      machine.cpu.ip))
    return slices, executed


def _locate(stop: Stop, image: KernelImage) -> Stop:
    """STOP with the symbol its eip is in, for a stop the guest did not choose."""
    symbol = None if stop.guest_chose else image.code_symbol(stop.ip)
    if symbol is None:
        return stop
    offset = stop.ip - symbol.value
    return replace(stop, symbol=f"{symbol.name}+{offset:#x}" if offset else symbol.name)


def _slice_length(machine: Machine, budget: int | None, executed: int) -> int:
    """A slice ends at the next timer event, so interrupts arrive on time."""
    count = SLICE_INSNS
    until_event = machine.insns_to_next_event()
    if until_event is not None:
        count = min(count, until_event)
    if budget is not None:
        count = min(count, budget - executed)
    return count


def _wait_for_interrupt(machine: Machine) -> None:
    """The CPU executed hlt: skip virtual time to the next interrupt, or stop if none
    can ever come."""
    eip = machine.cpu.ip
    machine.exits[Exit.HLT] += 1
    if not machine.supervisor.interrupts_enabled():
        machine.request_stop(Stop(StopKind.HALTED, "hlt with interrupts disabled", eip))
        return
    if machine.irqs.pending():
        return
    wait = machine.insns_to_next_event()
    if wait is None:
        machine.request_stop(Stop(StopKind.HALTED, "hlt with no interrupt source left", eip))
        return
    machine.advance(wait)
