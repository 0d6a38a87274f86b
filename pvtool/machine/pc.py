"""The emulated PC: one CPU, RAM, the port bus and the standard devices, and the
Unicorn hooks that turn every trap into a call on the mode's trap handler.

The machine owns all hooks (STYLE.md: hooks are registered in one place); what an
interrupt or exception means is decided by the handler the mode installs: the native
IDT delivery of machine/interrupts.py, or the hypervisor.
"""

from collections import Counter
from collections.abc import Callable
from typing import Protocol

from unicorn import (
    UC_ARCH_X86,
    UC_HOOK_CODE,
    UC_HOOK_INSN,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_MODE_32,
    Uc,
    UcError,
)
from unicorn import x86_const as X

from pvtool.machine.ata import IRQ as ATA_IRQ
from pvtool.machine.ata import AtaDisk
from pvtool.machine.clock import VirtualClock
from pvtool.machine.cmos import Cmos
from pvtool.machine.cpu import EIP, Cpu
from pvtool.machine.debugexit import DEBUG_EXIT_PORT, DEBUG_EXIT_PORTS, DebugExit
from pvtool.machine.disk import DiskImage
from pvtool.machine.exits import Exit
from pvtool.machine.lapic import APIC_BASE, APIC_SIZE, LocalApic
from pvtool.machine.memory import GuestMemory
from pvtool.machine.pic import Pic8259Pair
from pvtool.machine.pit import PIT_HZ, Pit8254
from pvtool.machine.ports import PortBus
from pvtool.machine.stop import Stop, StopKind
from pvtool.machine.uart import COM1_BASE, COM1_PORTS, Uart16550
from pvtool.x86.paging import page_up
from pvtool.x86.vectors import Vector

DEFAULT_RAM = 128 << 20  # what QEMU gives a guest by default
UNTIL_NEVER = 0xFFFFFFFF  # emu_start's end address; slices end by instruction count
# The PC's port map and ISA interrupt lines.
MASTER_PIC_PORT, SLAVE_PIC_PORT, PIT_PORT, CMOS_PORT = 0x20, 0xA0, 0x40, 0x70
ATA_COMMAND_PORT, ATA_CONTROL_PORT = 0x1F0, 0x3F6
PIT_IRQ = 0
RTC_EPOCH = 1066521600  # 2003-10-19 00:00 UTC (SOSP 2003): the RTC starts there, always


class TrapHandler(Protocol):
    """What a mode must provide: the meaning of every interrupt and exception, and
    how an external interrupt reaches the guest."""

    def on_interrupt(self, vector: int) -> None: ...

    def interrupts_enabled(self) -> bool: ...

    def take_interrupt(self, pic) -> None: ...


class Machine:
    """A standard PC at the level pvtool needs: CPU, RAM, ports, UART, debug exit."""

    def __init__(self, *, ram_size: int = DEFAULT_RAM,
                 output: Callable[[bytes], None], input_data: bytes = b"",
                 disk: DiskImage | None = None):
        self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        self.ram_size = ram_size
        self.uc.mem_map(0, ram_size)
        self.cpu = Cpu(self.uc)
        self.memory = GuestMemory(self.uc, self.cpu)
        self.ports = PortBus()
        self.output = output
        self.uart = Uart16550(output, input_data)
        self.ports.register(self.uart, COM1_BASE, COM1_PORTS, width=1)
        self.ports.register(DebugExit(self._on_debug_exit), DEBUG_EXIT_PORT, DEBUG_EXIT_PORTS)
        self._install_devices(disk)
        self.exits: Counter[Exit] = Counter()
        self.stop: Stop | None = None
        self.blocked = False
        self._hlt_executed = False
        self.trap_handler: TrapHandler | None = None
        # Timers a mode adds besides the PIT (a PV domain's set_timer_op): each gives
        # the instructions until its next event, or None.
        self.event_sources: list[Callable[[], int | None]] = []
        self.hook_error: BaseException | None = None
        # A mode that restricts port I/O sets this: it returns True (and deals with the
        # guest) when an access must not reach the device.
        self.io_denied: Callable[[int], bool] | None = None
        self._install_hooks()

    def _install_devices(self, disk: DiskImage | None) -> None:
        """The rest of a standard PC: interrupt controllers, timer, disk, RTC, APIC."""
        self.pic = Pic8259Pair()
        self.ports.register(self.pic.master, MASTER_PIC_PORT, 2, width=1)
        self.ports.register(self.pic.slave, SLAVE_PIC_PORT, 2, width=1)
        self.clock = VirtualClock(PIT_HZ)
        self.pit = Pit8254(lambda: self.pulse_irq(PIT_IRQ))
        self.ports.register(self.pit, PIT_PORT, 4, width=1)
        self.ata = AtaDisk(disk, lambda: self.pulse_irq(ATA_IRQ))
        self.ports.register(self.ata.command_block, ATA_COMMAND_PORT, 8)
        self.ports.register(self.ata.control_block, ATA_CONTROL_PORT, 1)
        self.cmos = Cmos(lambda: RTC_EPOCH + self.clock.seconds, self.ram_size // 1024)
        self.ports.register(self.cmos, CMOS_PORT, 2, width=1)
        self.lapic = LocalApic()
        self.uc.mmio_map(APIC_BASE, APIC_SIZE, self._apic_read, None, self._apic_write, None)

    def _apic_read(self, uc: Uc, offset: int, size: int, _) -> int:
        self.exits[Exit.MMIO] += 1
        return self.lapic.read(offset, size)

    def _apic_write(self, uc: Uc, offset: int, size: int, value: int, _) -> None:
        self.exits[Exit.MMIO] += 1
        self.lapic.write(offset, size, value)

    # -- hooks: the only place Unicorn calls back into Python ------------------------
    def _install_hooks(self) -> None:
        uc = self.uc
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, X.UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, X.UC_X86_INS_OUT)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid)

    def _on_intr(self, uc: Uc, vector: int, _) -> None:
        try:
            self.trap_handler.on_interrupt(vector)
        except BaseException as exc:  # never let Unicorn swallow a Python error
            self._fail(exc)

    def _on_in(self, uc: Uc, port: int, size: int, _) -> int:
        self.exits[Exit.IO] += 1
        if self.io_denied is not None and self.io_denied(port):
            return (1 << (8 * size)) - 1
        try:
            return self.ports.read(port, size)
        except BaseException as exc:
            self._fail(exc)
            return 0

    def _on_out(self, uc: Uc, port: int, size: int, value: int, _) -> None:
        self.exits[Exit.IO] += 1
        if self.io_denied is not None and self.io_denied(port):
            return
        try:
            self.ports.write(port, size, value)
        except BaseException as exc:
            self._fail(exc)

    def _on_invalid(self, uc: Uc, _) -> bool:
        """ud2 and other invalid opcodes bypass the INTR hook: deliver #UD like any
        other exception (EIP stays on the instruction)."""
        try:
            self.trap_handler.on_interrupt(Vector.UD)
        except BaseException as exc:
            self._fail(exc)
        return True

    def _fail(self, exc: BaseException) -> None:
        self.hook_error = exc
        self.uc.emu_stop()

    def _on_debug_exit(self, code: int) -> None:
        self.request_stop(Stop(StopKind.GUEST_EXIT, f"guest exit code {code}",
                               self.cpu.read(EIP), code))

    def map_memory(self, base: int, size: int) -> None:
        """More physical memory (zeroed), for instance the hypervisor's own frames."""
        self.uc.mem_map(base, page_up(size))

    # -- time and interrupts ----------------------------------------------------------
    def advance(self, insns: int) -> None:
        """Virtual time moves on by INSNS instructions; the timers follow it."""
        self.pit.advance(self.clock.advance(insns))

    def insns_to_next_event(self) -> int | None:
        ticks = self.pit.ticks_to_next_irq()
        waits = [] if ticks is None else [self.clock.insns_until(ticks)]
        waits += [w for w in (source() for source in self.event_sources) if w is not None]
        return min(waits, default=None)

    def pulse_irq(self, irq: int) -> None:
        """An edge on an ISA interrupt line (the PIT and the disk are edge-triggered)."""
        self.pic.raise_irq(irq)
        self.pic.lower_irq(irq)

    def block(self) -> None:
        """The guest waits for an interrupt (a PV SCHEDOP_block): end the slice so the
        run loop can move time on to the next event."""
        self.blocked = True
        self.uc.emu_stop()

    def watch(self, addresses, callback: Callable[[int], None]) -> None:
        """Call CALLBACK(address) before the instruction at each of ADDRESSES runs. A
        hook bounded to one address costs nothing anywhere else."""
        def on_code(uc: Uc, address: int, size: int, _) -> None:
            callback(address)

        for address in addresses:
            self.uc.hook_add(UC_HOOK_CODE, on_code, None, address, address)

    def watch_halts(self, addresses) -> None:
        """Hook the `hlt` instructions at ADDRESSES: at CPL 0 Unicorn returns from
        emu_start after a hlt with no hook called (UNICORN.md), and nothing else tells
        that apart from a slice that simply ran out."""
        self.watch(addresses, self._on_hlt)

    def _on_hlt(self, address: int) -> None:
        self._hlt_executed = True

    def halted(self) -> bool:
        """Whether the last slice ended waiting for an interrupt: a watched hlt at
        CPL 0, or a PV SCHEDOP_block."""
        if self.blocked:
            self.blocked = False
            return True
        return self._hlt_executed and self.cpu.cpl == 0

    # -- control ------------------------------------------------------------------------
    def request_stop(self, stop: Stop) -> None:
        """End the run after the current instruction; the first reason wins."""
        if self.stop is None:
            self.stop = stop
        self.uc.emu_stop()

    def run_slice(self, count: int) -> None:
        """Run at most `count` instructions from the current EIP.

        A Python error raised inside a hook is re-raised here; an error of Unicorn's own
        (an unmapped fetch, say) becomes a stop with the emulator's reason.
        """
        # Unicorn may still hold QEMU's `old_exception` from before the slice (the boot
        # trampoline, a delivery): without this the next fault becomes a silent #DF.
        self.cpu.ack_exception()
        self._hlt_executed = False
        try:
            self.uc.emu_start(self.cpu.read(EIP), UNTIL_NEVER, 0, count)
        except UcError as exc:
            if self.hook_error is None:
                self.request_stop(Stop(StopKind.EMULATOR_ERROR, str(exc), self.cpu.read(EIP)))
        if self.hook_error is not None:
            error, self.hook_error = self.hook_error, None
            raise error
