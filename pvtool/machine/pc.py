"""The emulated PC: one CPU, RAM, the port and MMIO buses, the standard devices and
their interrupt wiring, and the Unicorn hooks.

The machine owns all hooks (STYLE.md: hooks are registered in one place): its own
here, and through its Watches (machine/watches.py) the ones that come and go on a few
addresses while the guest runs, each wrapped by Machine.hook. It turns each
interrupt or exception into an Interruption (machine/interruption.py), and what that
means is decided by the supervisor the mode attaches: the bare machine's IDT delivery
(machine/native.py), or the hypervisor.
"""

import ctypes
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from functools import partial
from typing import Protocol

from unicorn import (
    UC_ARCH_X86,
    UC_HOOK_INSN,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_MODE_32,
    UC_MODE_64,
    Uc,
    UcError,
)
from unicorn import x86_const as X
from unicorn.unicorn_py3.arch.intel import (
    HOOK_INSN_CPUID_CFUNC,
    HOOK_INSN_IN_CFUNC,
    HOOK_INSN_OUT_CFUNC,
    HOOK_INSN_SYSCALL_CFUNC,
)
from unicorn.unicorn_py3.unicorn import HOOK_INTR_CFUNC, uccallback

from pvtool.interrupts import UNTIL_NEVER, emulate
from pvtool.machine.acpi_pm import (
    PM_BLOCK_PORTS,
    PM_REGISTER_WIDTH,
    PM_TIMER_HZ,
    SMI_COMMAND_PORT,
    SMI_PORTS,
    AcpiPm,
)
from pvtool.machine.ata import (
    CDROM_INDEX,
    CHANNELS,
    COMMAND_PORTS,
    CONTROL_PORTS,
    DRIVES_PER_CHANNEL,
    MAX_DISKS,
    AtaDisk,
    ChannelWiring,
    Drive,
    EmptyCdrom,
)
from pvtool.machine.clock import DeviceClock, TimedDevice, VirtualClock
from pvtool.machine.cmos import RTC_HZ, Cmos
from pvtool.machine.cpu import EAX, EBX, ECX, EDX, Cpu
from pvtool.machine.cpuid import CPU_MODELS
from pvtool.machine.debugexit import DEBUG_EXIT_PORT, DEBUG_EXIT_PORTS, DebugExit
from pvtool.machine.delay_port import DELAY_PORT, DelayPort
from pvtool.machine.delivery import Delivery
from pvtool.machine.disk import DiskImage
from pvtool.machine.dma import (
    CASCADE_UNMASKED,
    DMA1_BASE,
    DMA1_PAGE_BASE,
    DMA1_SHIFT,
    DMA2_BASE,
    DMA2_PAGE_BASE,
    DMA2_SHIFT,
    Dma8237,
)
from pvtool.machine.elcr import register_elcr
from pvtool.machine.exits import Exit
from pvtool.machine.fast_call import FastCall, FastCallKind
from pvtool.machine.fdc import FDC_IRQ, FloppyController
from pvtool.machine.fw_cfg import FwCfg
from pvtool.machine.hpet import HPET_BASE, HPET_HZ, HPET_SIZE, Hpet
from pvtool.machine.interruption import (
    Interruption,
    Kind,
    from_intr_hook,
    invalid_opcode,
)
from pvtool.machine.ioapic import IOAPIC_BASE, IOAPIC_SIZE, IoApic
from pvtool.machine.irq import IrqRouter
from pvtool.machine.kbc import KBC_IRQ, MOUSE_IRQ, Kbc8042
from pvtool.machine.lapic import APIC_BASE, APIC_BUS_HZ, APIC_SIZE, LocalApic
from pvtool.machine.memory import GuestMemory, UnassignedMemory
from pvtool.machine.mmio import MmioBus
from pvtool.machine.parallel import ParallelPort
from pvtool.machine.pci import (
    CONFIG_ADDRESS_HIGH_PORT,
    CONFIG_ADDRESS_PORT,
    CONFIG_DATA_PORT,
    CONFIG_DATA_PORTS,
    PciHost,
)
from pvtool.machine.pci_devices import PM_BASE, default_functions
from pvtool.machine.pic import Pic8259Pair
from pvtool.machine.pit import PIT_HZ, Pit8254
from pvtool.machine.ports import PortBus, Wide
from pvtool.machine.profile import Profile
from pvtool.machine.ps2kbd import KEY_CLOCK_HZ, Ps2Keyboard
from pvtool.machine.stop import Stop, StopKind
from pvtool.machine.system_ports import PORT_A, PORT_B, RESET_CONTROL, PortA, PortB, ResetControl
from pvtool.machine.uart import COM1_BASE, COM1_PORTS, Uart16550
from pvtool.machine.vbe import BochsVbe
from pvtool.machine.vga_text import TEXT_BUFFER, VgaText, firmware_screen
from pvtool.machine.watches import Watches
from pvtool.x86 import msrs
from pvtool.x86.paging import page_up
from pvtool.x86.vectors import Vector

DEFAULT_RAM = 128 << 20  # what QEMU gives a guest by default
MAX_RAM = 3072 << 20  # the most --memory gives: RAM below the PCI hole at 3 GiB
# The PC's port map and ISA interrupt lines.
MASTER_PIC_PORT, SLAVE_PIC_PORT, PIT_PORT, CMOS_PORT = 0x20, 0xA0, 0x40, 0x70
PIT_IRQ, UART_IRQ, RTC_IRQ = 0, 4, 8
RTC_EPOCH = 1066521600  # 2003-10-19 00:00 UTC (SOSP 2003): the RTC starts there, always
UC_MODES = {32: UC_MODE_32, 64: UC_MODE_64}
PAGE_FAULT = int(Vector.PF)  # compared on every exit: an int's compare is the cheapest

# The registers in, out, ins and outs change, by width.
PORT_IO_REGISTERS = {32: ("eax", "ecx", "esi", "edi"), 64: ("rax", "rcx", "rsi", "rdi")}


class Supervisor(Protocol):
    """Who handles what the CPU raises: the bare machine's own IDT delivery
    (machine/native.py) or a hypervisor. Attached once, before the first slice."""

    delivery: Delivery  # how it delivers: one mechanism, this mode's rules (traceable)
    # Optional: a software vector the supervisor takes straight from the hook, before
    # any Interruption is made (a PV domain's hypercall vector: its hot path), and the
    # method that takes it. A supervisor without them gets every vector as an event.
    direct_vector: int | None
    # Optional: the method that takes a #PF fault straight from the hook, its error
    # code read and the fault acknowledged, before any Interruption is made (a PV
    # domain's writable page tables: the hot path of a kernel's PTE store).
    on_page_fault: Callable[[int, int], None]
    # Optional: True when every port reaches its device whatever the CPU's state (the
    # bare PC): the port hooks then skip port_allowed.
    all_ports_allowed: bool

    def on_interruption(self, event: Interruption) -> None:
        """An interrupt or exception the CPU raised (a fault already acknowledged)."""

    def on_direct_vector(self) -> None:
        """`int direct_vector` was executed (EIP after it); nothing decoded yet."""

    def interrupts_enabled(self) -> bool:
        """Whether an external interrupt may be taken now (IF, or a virtual IF)."""

    def take_interrupt(self, irqs: IrqRouter) -> None:
        """Between slices: take a pending external interrupt if it may."""

    def insns_to_next_event(self) -> int | None:
        """Instructions until a timer of the supervisor's own fires (None: none)."""

    def port_allowed(self, port: int, size: int) -> bool:
        """Whether an access to SIZE bytes from PORT reaches the device (False: the
        CPU raises #GP(0) on the instruction, as it does without I/O privilege)."""

    def on_fast_call(self, call: FastCall) -> None:
        """The guest executed `syscall` or `sysenter` (machine/fast_call.py): the
        supervisor does what it means, and sets `call.resume` to move execution
        elsewhere than after the instruction."""


class Machine:
    """A standard PC at the level pvtool needs: CPU, RAM, ports, MMIO, the PC's
    devices and its interrupt wiring."""

    def __init__(self, *, ram_size: int = DEFAULT_RAM,
                 output: Callable[[bytes], None], input_data: bytes = b"",
                 disks: Sequence[DiskImage | None] = (), bits: int = 32,
                 keys: Iterable[int] = (), host_tsc: bool = False, native_cpu: bool = False,
                 profile: Profile | None = None):
        self.uc = Uc(UC_ARCH_X86, UC_MODES[bits])
        self.profile = profile  # --profile: every hook timed (machine/profile.py)
        self.cpu_model = CPU_MODELS[bits]  # the PC of qemu-system-i386, or of -x86_64
        if native_cpu and self.cpu_model.unicorn_model is not None:
            self.uc.ctl_set_cpu_model(self.cpu_model.unicorn_model)
        self.ram_size = ram_size
        self.cpu = Cpu(self.uc, bits)
        self.memory = GuestMemory(self.uc, self.cpu)
        self.memory.map_ram(ram_size)  # pvtool's own, read in place (machine/memory.py)
        self.exits: Counter[Exit] = profile.exits if profile else Counter()
        self.hook_error: BaseException | None = None
        self.ports = PortBus()
        self.mmio = MmioBus(self.uc, self.exits, self._fail, self.hook)
        self.output = output
        self.uart = Uart16550(output, input_data,
                              lambda level: self.irqs.set_line(UART_IRQ, level))
        self.ports.register(self.uart, COM1_BASE, COM1_PORTS, width=1)
        self.ports.register(DebugExit(self._on_debug_exit), DEBUG_EXIT_PORT, DEBUG_EXIT_PORTS)
        self._install_devices(disks)
        self._install_console(keys)
        self.stop: Stop | None = None
        self.blocked = False
        self._port_fault: tuple[int, dict[int, int]] | None = None  # (EIP, registers)
        self.watches = Watches(self.uc, self.cpu, self.memory, self.hook, self._fail)
        self.supervisor: Supervisor | None = None
        self._raw_hooks: list = []
        self._direct_vector = -1  # Supervisor.direct_vector: none until one is attached
        self._on_page_fault: Callable[[int, int], None] | None = None  # attach's
        self._port_allowed: Callable[[int, int], bool] | None = None  # attach's
        self.port_exits = 0  # the port hooks' count, added to exits after each slice
        self._install_hooks()
        if not host_tsc:
            self._install_virtual_tsc()

    def attach(self, supervisor: Supervisor) -> None:
        """SUPERVISOR handles the CPU's interrupts and exceptions from now on."""
        self.supervisor = supervisor
        direct = getattr(supervisor, "direct_vector", None)
        self._direct_vector = -1 if direct is None else direct
        self._on_page_fault = getattr(supervisor, "on_page_fault", None)
        self._port_allowed = (None if getattr(supervisor, "all_ports_allowed", False)
                              else supervisor.port_allowed)

    def _install_devices(self, disks: Sequence[DiskImage | None]) -> None:
        """The rest of a standard PC: interrupt controllers, timers, disks, RTC, APIC.
        DISKS are the IDE disks by QEMU's -drive index (machine/ata.py)."""
        self.pic = Pic8259Pair()
        self.lapic = LocalApic(self.pic, eoi_broadcast=lambda vector: self.ioapic.eoi(vector),
                               raise_nmi=lambda: self.irqs.raise_nmi(),
                               signal=self._interrupt_signalled)
        self.ioapic = IoApic(self.lapic.message, self.pic)
        self.irqs = IrqRouter(self.pic, self.ioapic, intr=self.lapic)
        self.mmio.register(self.lapic, APIC_BASE, APIC_SIZE)
        self.mmio.register(self.ioapic, IOAPIC_BASE, IOAPIC_SIZE)
        self.ports.register(self.pic.master, MASTER_PIC_PORT, 2, width=1)
        self.ports.register(self.pic.slave, SLAVE_PIC_PORT, 2, width=1)
        self.clock = VirtualClock()
        self.timers: list[DeviceClock] = []
        self.hpet = Hpet(self.irqs.set_line, self.uc.emu_stop)
        self.add_timer(self.hpet, HPET_HZ)
        self.mmio.register(self.hpet, HPET_BASE, HPET_SIZE)
        self.pit = Pit8254(self._pit_irq)
        self.add_timer(self.pit, PIT_HZ)
        self.ports.register(self.pit, PIT_PORT, 4, width=1)
        drives = _ide_drives(disks)
        self.ata = [self._ide_channel(wiring, drives, index * DRIVES_PER_CHANNEL)
                    for index, wiring in enumerate(CHANNELS)]
        self.cmos = Cmos(lambda: RTC_EPOCH + self.clock.seconds, self.ram_size // 1024,
                         self._rtc_irq)
        self.add_timer(self.cmos, RTC_HZ)
        self.ports.register(self.cmos, CMOS_PORT, 2, width=1)
        self.ports.register(PortB(self.pit), PORT_B, 1, width=1)
        self.ports.register(PortA(self.reset), PORT_A, 1, width=1, wide=Wide.SAME_REGISTER)
        self.ports.register(ResetControl(self.reset), RESET_CONTROL, 1, width=1)
        self.add_timer(self.lapic, APIC_BUS_HZ)
        self._install_chipset()
        self._install_isa()

    def _install_chipset(self) -> None:
        """PCI configuration space, the PIIX4's ACPI PM block and SMI command port, and
        QEMU's firmware configuration device."""
        self.pci = PciHost(default_functions(self.ram_size))
        self.ports.register(self.pci.address_port, CONFIG_ADDRESS_PORT, 1)
        self.ports.register(self.pci.address_port, CONFIG_ADDRESS_HIGH_PORT, 2)
        self.ports.register(self.pci, CONFIG_DATA_PORT, CONFIG_DATA_PORTS)
        self.acpi_pm = AcpiPm(lambda: self.clock.ticks(PM_TIMER_HZ), self._on_power_off)
        self.ports.register(self.acpi_pm, PM_BASE, PM_BLOCK_PORTS, width=PM_REGISTER_WIDTH)
        self.ports.register(self.acpi_pm.smi_command, SMI_COMMAND_PORT, SMI_PORTS, width=1)
        self.fw_cfg = FwCfg(self.ram_size, self.cpu_model)
        self.fw_cfg.register(self.ports, self.memory)

    def _install_isa(self) -> None:
        """The ISA devices a kernel finds by probing ports: the DMA controllers and
        their page registers, the delay port, the floppy controller with no drive,
        LPT1 and the ELCR (guests/portscan measures them on QEMU)."""
        self.dma = [Dma8237(DMA1_SHIFT), Dma8237(DMA2_SHIFT, mask=CASCADE_UNMASKED)]
        self.dma[0].register(self.ports, DMA1_BASE, DMA1_PAGE_BASE)
        self.dma[1].register(self.ports, DMA2_BASE, DMA2_PAGE_BASE)
        self.ports.register(DelayPort(), DELAY_PORT, 1)
        self.fdc = FloppyController(lambda level: self.irqs.set_line(FDC_IRQ, level))
        self.fdc.register(self.ports)
        self.lpt = ParallelPort()
        self.lpt.register(self.ports)
        self.elcr = register_elcr(self.ports)

    def _install_console(self, keys: Iterable[int]) -> None:
        """The screen and the keyboard: the VGA in text mode, the 8042 with a PS/2
        keyboard on IRQ 1 that types KEYS (scan codes) as virtual time passes, and a
        PS/2 mouse on IRQ 12."""
        self.vga = VgaText()
        self.vga.register(self.ports)
        BochsVbe().register(self.ports)
        self.keyboard = Ps2Keyboard(keys)
        self.kbc = Kbc8042(self.keyboard, lambda level: self.irqs.set_line(KBC_IRQ, level),
                           self.reset,
                           set_mouse_irq=lambda level: self.irqs.set_line(MOUSE_IRQ, level))
        self.kbc.register(self.ports)
        self.add_timer(self.keyboard, KEY_CLOCK_HZ)

    def show_firmware_screen(self) -> None:
        """The text screen as SeaBIOS leaves it to a kernel it boots (native and
        trap-and-emulate mode: a PV guest's memory is its own)."""
        self.memory.write_phys(TEXT_BUFFER, firmware_screen())

    def _ide_channel(self, wiring: ChannelWiring, drives: Sequence[Drive],
                     first: int) -> AtaDisk:
        """One IDE channel with DRIVES[FIRST] as master and the next as slave."""
        master, slave = drives[first:first + DRIVES_PER_CHANNEL]
        channel = AtaDisk(master, lambda: self.irqs.pulse(wiring.irq), slave, first)
        # QEMU decodes the data port at 16 and 32 bits, the other registers as a
        # byte-wide portio list (hw/ide/ioport.c).
        self.ports.register(channel.command_block, wiring.command_base, 1)
        self.ports.register(channel.command_block, wiring.command_base + 1, COMMAND_PORTS - 1,
                            width=1, wide=Wide.PORTIO, first=1)
        self.ports.register(channel.control_block, wiring.control_base, CONTROL_PORTS, width=1,
                            wide=Wide.PORTIO)
        return channel

    def _rtc_irq(self, level: bool) -> None:
        """The RTC drives IRQ 8 unless the HPET's legacy replacement holds it off."""
        if not self.hpet.legacy_replacement:
            self.irqs.set_line(RTC_IRQ, level)

    def _pit_irq(self) -> None:
        """OUT0 reaches IRQ 0 unless the HPET's legacy replacement holds it off."""
        if not self.hpet.legacy_replacement:
            self.irqs.pulse(PIT_IRQ)

    # -- hooks: the only place Unicorn calls back into Python ------------------------
    def hook(self, callback: Callable, name: str) -> Callable:
        """CALLBACK as Unicorn should call it: itself, or timed for --profile (NAME is
        its row when it counts no exit). Every hook the machine installs goes here."""
        return callback if self.profile is None else self.profile.timed(callback, name)

    def _install_hooks(self) -> None:
        self._add_raw_hook(UC_HOOK_INTR, HOOK_INTR_CFUNC, self._on_intr, "interrupt hook")
        self._add_raw_hook(UC_HOOK_INSN, HOOK_INSN_IN_CFUNC,
                           self._counting(self._on_in, Exit.IO), "port hook", X.UC_X86_INS_IN)
        self._add_raw_hook(UC_HOOK_INSN, HOOK_INSN_OUT_CFUNC,
                           self._counting(self._on_out, Exit.IO), "port hook",
                           X.UC_X86_INS_OUT)
        self.uc.hook_add(UC_HOOK_INSN_INVALID, self.hook(self._on_invalid, "invalid opcode"))
        for kind, instruction in ((FastCallKind.SYSCALL, X.UC_X86_INS_SYSCALL),
                                  (FastCallKind.SYSENTER, X.UC_X86_INS_SYSENTER)):
            self._add_raw_hook(UC_HOOK_INSN, HOOK_INSN_SYSCALL_CFUNC,
                               partial(self._fast_call, FastCall(kind, self.cpu, self.memory)),
                               "fast call hook", instruction)

    def _add_raw_hook(self, kind: int, functype, callback: Callable, name: str,
                      *instruction: int) -> None:
        """Hook CALLBACK straight to Unicorn, without the binding's guard (two Python
        calls a hook, a third of an empty hook's cost): CALLBACK must catch every
        exception itself and hand it to _fail. Its first argument is Unicorn's handle,
        not the Uc object."""
        fptr = functype(self.hook(callback, name))
        self._raw_hooks.append(fptr)  # ctypes must keep it alive as long as the hook
        self.uc._Uc__do_hook_add(kind, fptr, 1, 0, *map(ctypes.c_int, instruction))

    def present_cpuid(self, cpuid: Callable[[int, int], tuple[int, int, int, int]]) -> None:
        """CPUID answers CPUID(EAX, ECX) from now on (machine/cpuid.py), not what
        Unicorn's own CPU model would say."""
        def on_cpuid(uc: Uc, _) -> int:
            try:
                values = cpuid(self.cpu.read(EAX), self.cpu.read(ECX))
                for reg, value in zip((EAX, EBX, ECX, EDX), values, strict=True):
                    self.cpu.write(reg, value)
            except BaseException as exc:
                self._fail(exc)
            return 1  # the instruction's own answer is skipped

        self.uc.hook_add(UC_HOOK_INSN, self.hook(on_cpuid, "cpuid"), None, 1, 0,
                         X.UC_X86_INS_CPUID)

    def _install_virtual_tsc(self) -> None:
        """`rdtsc` and `rdtscp` read the virtual clock (machine/clock.py), in every mode
        and at every CPL, where Unicorn's own would read the host's TSC; `rdtscp` also
        gives ECX the TSC_AUX MSR (Intel SDM vol. 2B, RDTSCP). Unicorn 2.1.4 calls
        UC_HOOK_INSN hooks for RDTSC and RDTSCP with the CPUID hook's signature
        (returning 1 skips the instruction), but its Python binding refuses to register
        one: this goes through the binding's own registration, below its check. About
        4 us a read, 8 for rdtscp."""
        def on_rdtsc(uc: Uc, _) -> int:
            try:
                self._read_virtual_tsc()
            except BaseException as exc:
                self._fail(exc)
            return 1

        def on_rdtscp(uc: Uc, _) -> int:
            try:
                self._read_virtual_tsc()
                self.cpu.write(ECX, self.tsc_aux)
            except BaseException as exc:
                self._fail(exc)
            return 1

        self._tsc_callbacks = []  # ctypes must keep them alive as long as the hooks
        for handler, name, insn in ((on_rdtsc, "rdtsc", X.UC_X86_INS_RDTSC),
                                    (on_rdtscp, "rdtscp", X.UC_X86_INS_RDTSCP)):
            callback = uccallback(self.uc, HOOK_INSN_CPUID_CFUNC)(self.hook(handler, name))
            self._tsc_callbacks.append(callback)
            self.uc._Uc__do_hook_add(UC_HOOK_INSN, callback, 1, 0, ctypes.c_int(insn))

    def _read_virtual_tsc(self) -> None:
        tsc = self.clock.read_tsc()
        self.cpu.write(EAX, tsc & 0xFFFF_FFFF)  # EDX:EAX, upper halves zeroed
        self.cpu.write(EDX, tsc >> 32)

    @property
    def tsc_aux(self) -> int:
        """IA32_TSC_AUX, which `rdtscp` returns in ECX: the CPU's own register, which a
        ring-0 kernel's wrmsr writes directly and a hypervisor through this."""
        return self.uc.msr_read(msrs.TSC_AUX)

    @tsc_aux.setter
    def tsc_aux(self, value: int) -> None:
        self.uc.msr_write(msrs.TSC_AUX, value)

    def _on_intr(self, handle: int, vector: int, _) -> None:
        try:
            if vector == self._direct_vector:
                self.supervisor.on_direct_vector()
                return
            if vector == PAGE_FAULT and self._on_page_fault is not None \
                    and not self.cpu.raised_by_instruction:  # not an `int 14`
                self._on_page_fault(self.cpu.ip, self.cpu.ack_exception())
                return
            self.supervisor.on_interruption(from_intr_hook(self.cpu, self.memory, vector))
        except BaseException as exc:  # never let Unicorn swallow a Python error
            self._fail(exc)

    def _counting(self, callback: Callable, kind: Exit) -> Callable:
        """CALLBACK, which counts its exits in port_exits (an integer: a third of the
        cost of a Counter's item), as --profile needs them counted: in exits, as they
        happen (machine/profile.py), and not again after the slice."""
        if self.profile is None:
            return callback

        def counted(*args):
            self.exits[kind] += 1
            return callback(*args)

        return counted

    def _on_in(self, handle: int, port: int, size: int, _) -> int:
        self.port_exits += 1
        try:
            if self._port_allowed is not None and not self._port_allowed(port, size):
                return self._refuse_port_access()
            return self.ports.read(port, size)
        except BaseException as exc:
            self._fail(exc)
            return 0

    def _on_out(self, handle: int, port: int, size: int, value: int, _) -> None:
        self.port_exits += 1
        try:
            if self._port_allowed is None or self._port_allowed(port, size):
                self.ports.write(port, size, value)
            else:
                self._refuse_port_access()
        except BaseException as exc:
            self._fail(exc)

    def _count_port_exits(self) -> None:
        """The port hooks' exits join the others (unless --profile counted them)."""
        if self.profile is None:
            self.exits[Exit.IO] += self.port_exits
        self.port_exits = 0

    def _refuse_port_access(self) -> int:
        """#GP(0) for the in/out/ins/outs being executed. A port hook cannot make
        Unicorn fault (an EIP written here is ignored and the instruction completes),
        so the hook keeps EIP (on the instruction, prefixes included) and the registers
        those instructions change, and ends the slice after it; run_slice puts them back
        and raises the fault. An `in` gets 0 into EAX, which is put back; an `ins` has
        already stored zeros at ES:EDI (QEMU writes them before it reads the port, to
        make the store restartable), and they stay (docs/ABI.md, departures)."""
        cpu = self.cpu
        saved = {cpu.width.gprs[name]: cpu.read(cpu.width.gprs[name])
                 for name in PORT_IO_REGISTERS[cpu.width.bits]}
        self._port_fault = (cpu.ip, saved)
        self.uc.emu_stop()
        return 0

    def _raise_port_fault(self) -> None:
        ip, saved = self._port_fault
        self._port_fault = None
        for reg, value in saved.items():
            self.cpu.write(reg, value)
        self.cpu.write(self.cpu.width.ip, ip)
        self.supervisor.on_interruption(Interruption(Vector.GP, Kind.EXCEPTION, ip=ip,
                                                     error_code=0))

    def _on_invalid(self, uc: Uc, _) -> bool:
        """ud2 and other invalid opcodes bypass the INTR hook: deliver #UD like any
        other exception (EIP stays on the instruction)."""
        try:
            self.supervisor.on_interruption(invalid_opcode(self.cpu))
        except BaseException as exc:
            self._fail(exc)
        return True

    def _fast_call(self, call: FastCall, handle: int, _) -> None:
        """The hook of `syscall` or `sysenter`, with the record of its kind (reused:
        machine/fast_call.py). Unicorn adds the instruction's length to RIP after this
        hook, whatever RIP the hook left: a resume address is written that much short
        of its target."""
        try:
            call.clear()
            self.supervisor.on_fast_call(call)
            if call.resume is not None:
                self.cpu.write(self.cpu.width.ip, call.resume - call.length)
        except BaseException as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """A hook could not finish: memory the guest led pvtool to is not there ends
        the run as the guest's own such access does; anything else is pvtool's error,
        re-raised from run_slice."""
        if isinstance(exc, UnassignedMemory):
            self.request_stop(Stop(StopKind.EMULATOR_ERROR, str(exc), self.cpu.ip))
            return
        self.hook_error = exc
        self.uc.emu_stop()

    def _on_power_off(self) -> None:
        self.request_stop(Stop(StopKind.SHUTDOWN, "ACPI power off", self.cpu.ip, 0))

    def _on_debug_exit(self, code: int) -> None:
        self.request_stop(Stop(StopKind.GUEST_EXIT, f"guest exit code {code}",
                               self.cpu.ip, code))

    def reset(self, how: str) -> None:
        """The guest reset the PC: the run ends, as QEMU's does with -no-reboot."""
        self.request_stop(Stop(StopKind.RESET, f"reset through {how}", self.cpu.ip))

    def map_memory(self, base: int, size: int) -> None:
        """More physical memory (zeroed), for instance the hypervisor's own frames,
        which the hypervisor may read in place (GuestMemory.host_view)."""
        self.memory.map_host(base, page_up(size))

    # -- time and interrupts ----------------------------------------------------------
    def add_timer(self, device: TimedDevice, hz: int) -> None:
        """DEVICE counts an HZ input clock driven by virtual time."""
        self.timers.append(DeviceClock(self.clock, hz, device))

    def advance(self, insns: int) -> None:
        """Virtual time moves on by INSNS instructions; the timers follow it."""
        self.clock.advance(insns)
        for timer in self.timers:
            timer.catch_up()

    def insns_to_next_event(self) -> int | None:
        """Instructions until the next timer event: a device's, or the supervisor's."""
        soonest = self.supervisor.insns_to_next_event()
        for timer in self.timers:
            wait = timer.insns_to_next_irq()
            if wait is not None and (soonest is None or wait < soonest):
                soonest = wait
        return soonest

    def _interrupt_signalled(self) -> None:
        """The local APIC may have just raised INTR or NMI in the middle of a slice (a
        self-IPI, an EOI or TPR write unblocking a vector, a device's line): end the
        slice if the CPU can take it now, as QEMU takes it at the next instruction."""
        if not self.watches.in_slice or self.watches.stopping_soon:
            return
        if self.irqs.nmi or (self.irqs.pending() and self.supervisor.interrupts_enabled()):
            self.watches.stop_at_next_instruction()

    def block(self) -> None:
        """The guest waits for an interrupt (a PV SCHEDOP_block): end the slice so the
        run loop can move time on to the next event."""
        self.blocked = True
        self.end_slice()

    def end_slice(self) -> None:
        """End the slice after the current instruction (a hypervisor switching vCPUs;
        --timeout's watchdog, from its own thread)."""
        self.uc.emu_stop()

    def halted(self) -> bool:
        """Whether the last slice ended waiting for an interrupt: a watched hlt at
        CPL 0, or a PV SCHEDOP_block."""
        if self.blocked:
            self.blocked = False
            return True
        return self.watches.hlt_executed and self.cpu.cpl == 0

    # -- control ------------------------------------------------------------------------
    def request_stop(self, stop: Stop) -> None:
        """End the run after the current instruction; the first reason wins."""
        if self.stop is None:
            self.stop = self._noting_ram(stop)
        self.uc.emu_stop()

    def _noting_ram(self, stop: Stop) -> Stop:
        """A stop whose fault lies past the RAM, where more --memory would put RAM,
        says so: a kernel given too little RAM faults on its first touch beyond it."""
        address = stop.fault_address
        if address is None or not self.ram_size <= address < MAX_RAM:
            return stop
        return replace(stop, reason=f"{stop.reason} ({address:#x} is past the "
                                    f"{self.ram_size >> 20} MiB of RAM --memory gives)")

    def run_slice(self, count: int) -> None:
        """Run at most `count` instructions from the current EIP.

        A Python error raised inside a hook is re-raised here; an error of Unicorn's own
        (an unmapped fetch, say) becomes a stop with the emulator's reason; SIGINT and
        SIGTERM end the slice early and are raised here (pvtool/interrupts.py).
        """
        # Unicorn may still hold QEMU's `old_exception` from before the slice (the boot
        # trampoline, a delivery): without this the next fault becomes a silent #DF.
        self.cpu.ack_exception()
        self.watches.start_slice()
        try:
            if self.profile is None:
                emulate(self.uc, self.cpu.ip, UNTIL_NEVER, count)
            else:
                self.profile.emulate(lambda: emulate(self.uc, self.cpu.ip, UNTIL_NEVER, count))
        except UcError as exc:
            if self.hook_error is None:
                self.request_stop(Stop(StopKind.EMULATOR_ERROR, str(exc), self.cpu.ip))
        self.finish_slice()

    def finish_slice(self) -> None:
        """What follows every slice, once emulation has returned: the port hooks' exits
        counted, the watches' work (machine/watches.py), a hook's Python error raised
        here, and a refused port access made the #GP it is. A caller that runs the CPU
        itself (a test harness) calls this after each emu_start, as run_slice does."""
        self.watches.emulation_returned()
        if self.port_exits:
            self._count_port_exits()
        if self.hook_error is not None:
            error, self.hook_error = self.hook_error, None
            raise error
        if self._port_fault is not None:
            self._raise_port_fault()
        self.watches.after_slice(lambda: self.stop is not None)


def _ide_drives(disks: Sequence[DiskImage | None]) -> list[Drive]:
    """The four IDE places by -drive index: DISKS, and QEMU's default empty CD-ROM
    where no disk takes its place."""
    drives: list[Drive] = [*disks, *[None] * (MAX_DISKS - len(disks))]
    if drives[CDROM_INDEX] is None:
        drives[CDROM_INDEX] = EmptyCdrom()
    return drives
