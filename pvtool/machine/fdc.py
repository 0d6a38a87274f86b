"""The floppy disk controller at 0x3F0-0x3F7 with no drive attached, as QEMU 7.2's
i440FX PC has it (hw/block/fdc.c, an Intel 82077AA) and as a kernel detects it.

Ports (82077AA datasheet, section 2): 0x3F1 status register B, 0x3F2 the digital
output register (DOR: drive select, reset, DMA gate, motors), 0x3F3 the tape drive
register, 0x3F4 the main status register (MSR) on reads and the data rate select
register (DSR) on writes, 0x3F5 the FIFO, 0x3F7 the digital input register (disk
changed: always, with no disk) and the configuration control register. QEMU decodes
neither 0x3F0 (status register A) nor 0x3F6 (the IDE channel's).

Taking DOR bit 2 from 0 to 1 (or DSR bit 7 or 6) resets the controller, which then
raises IRQ 6 and answers the next four SENSE INTERRUPT STATUS commands with 0xC0-0xC3
(a ready change for each drive), as QEMU's fdctrl_reset does. Reading the MSR takes the
controller out of reset without resetting it (QEMU's fdctrl_read_main_status sets the
DOR's reset bit). A command byte is taken in the command phase (MSR 0x80); its result
bytes are read with the MSR at 0xD0, and reading the last one returns to the command
phase and lowers IRQ 6. Commands answered: SPECIFY, SENSE INTERRUPT STATUS, DUMPREG,
VERSION (0x90: an 82077AA), CONFIGURE and LOCK; any other answers 0x80 (invalid
command), as QEMU answers what it does not implement.

Departures: the commands that act on a drive (recalibrate, seek, read and write,
format, read ID, sense drive status, ...) answer 0x80 at once without taking their
parameter bytes, where QEMU takes the parameters and acts on its empty drives; the
data rate, the perpendicular mode and the non-DMA mode are not kept. All values were
measured on QEMU with guests/portscan.
"""

from collections.abc import Callable

from pvtool.machine.ports import PortBus, Wide

FDC_BASE, FDC_IRQ = 0x3F0, 6
PORTS = ((1, 5), (7, 1))  # (first offset, ports) QEMU decodes
SRB, DOR, TDR, MSR, FIFO, DIR = 1, 2, 3, 4, 5, 7
DOR_SELECT, DOR_NRESET, DOR_DMA, DOR_MOTOR0, DOR_MOTOR1 = 0x03, 0x04, 0x08, 0x10, 0x20
SRB_RESET, SRB_MOTOR0, SRB_MOTOR1, SRB_DRIVE0 = 0xC0, 0x01, 0x02, 0x20
DSR_RESET = 0xC0  # software reset, power down: both reset the controller
TDR_BOOT_SELECT = 0x0C
MSR_RQM, MSR_DIO, MSR_BUSY = 0x80, 0x40, 0x10
DIR_DISK_CHANGED = 0x80
ST0_INVALID, ST0_READY_CHANGED = 0x80, 0xC0
RESET_SENSES = 4  # one ready change per drive after a reset
VERSION_82077 = 0x90
LAST_SECTOR = 0xFF  # what DUMPREG shows for a drive with no disk
CONFIG_RESET = 0x60  # implied seeks off, FIFO on, drive polling off, threshold 1


class FloppyController:
    """SET_IRQ drives IRQ 6's line."""

    def __init__(self, set_irq: Callable[[bool], None]):
        self.set_irq = set_irq
        self.irq = False
        self.dor = DOR_NRESET | DOR_DMA
        self.srb = SRB_RESET
        self.tdr = 0
        self.senses = 0  # SENSE INTERRUPT STATUS answers still owed after a reset
        self.timers = (0, 0)  # SPECIFY's step rate/head unload and head load times
        self.config, self.precompensation, self.lock = CONFIG_RESET, 0, 0
        self.command: list[int] = []
        self.result: list[int] = []

    def register(self, ports: PortBus) -> None:
        for first, count in PORTS:
            ports.register(self, FDC_BASE + first, count, width=1, wide=Wide.PORTIO,
                           first=first)

    def read(self, port: int, size: int) -> int:
        if port == MSR:
            self.dor |= DOR_NRESET
            return self.status()
        if port == FIFO:
            return self._read_result()
        return {SRB: self.srb, DOR: self.dor, TDR: self.tdr, DIR: DIR_DISK_CHANGED}[port]

    def write(self, port: int, size: int, value: int) -> None:
        if port == DOR:
            self._write_dor(value)
        elif not self.dor & DOR_NRESET:
            return  # in reset, the controller takes nothing but the DOR
        elif port == TDR:
            self.tdr = value & TDR_BOOT_SELECT
        elif port == MSR and value & DSR_RESET:
            self.reset()
        elif port == FIFO and not self.result:
            self._write_command(value)

    def status(self) -> int:
        """The MSR: ready for a command byte, busy taking parameters, or results due."""
        if self.result:
            return MSR_RQM | MSR_DIO | MSR_BUSY
        return MSR_RQM | MSR_BUSY if self.command else MSR_RQM

    def reset(self) -> None:
        """What fdctrl_reset(do_irq) does: a clean controller that says it was reset."""
        self._lower_irq()
        self.srb, self.dor = SRB_RESET, DOR_NRESET | DOR_DMA
        self.command, self.result = [], []
        self._raise_irq()
        self.senses = RESET_SENSES

    def _write_dor(self, value: int) -> None:
        motors = (value & DOR_MOTOR0 and SRB_MOTOR0) | (value & DOR_MOTOR1 and SRB_MOTOR1)
        self.srb = self.srb & ~(SRB_MOTOR0 | SRB_MOTOR1 | SRB_DRIVE0) | motors
        self.srb |= SRB_DRIVE0 if value & 1 else 0
        if value & DOR_NRESET and not self.dor & DOR_NRESET:
            self.reset()
        self.dor = value

    def _write_command(self, value: int) -> None:
        self.command.append(value)
        parameters, handler = COMMANDS.get(self.command[0], (0, FloppyController._invalid))
        if len(self.command) > parameters:
            command, self.command = self.command, []
            self.result = handler(self, command)

    def _read_result(self) -> int:
        if not self.result:
            return 0  # QEMU: "controller not ready for reading"
        value = self.result.pop(0)
        if not self.result:
            self._lower_irq()
        return value

    def _raise_irq(self) -> None:
        if not self.irq:
            self.irq = True
            self.set_irq(True)

    def _lower_irq(self) -> None:
        if self.irq:
            self.irq = False
            self.set_irq(False)

    # -- the commands: each takes its bytes (the command byte first) and returns its
    # -- result bytes.
    def _sense_interrupt(self, command: list[int]) -> list[int]:
        if not self.senses:
            return [ST0_INVALID]
        self.senses -= 1
        self._lower_irq()
        # A ready change for drive 0, 1, 2, 3 in turn; present cylinder 0: the empty
        # drives never moved.
        return [ST0_READY_CHANGED + RESET_SENSES - 1 - self.senses, 0]

    def _specify(self, command: list[int]) -> list[int]:
        self.timers = (command[1] >> 4, command[2] >> 1)
        return []

    def _dumpreg(self, command: list[int]) -> list[int]:
        timer0, timer1 = self.timers
        dma = int(bool(self.dor & DOR_DMA))
        return [0, 0, 0, 0, timer0, timer1 << 1 | dma, LAST_SECTOR, self.lock << 7,
                self.config, self.precompensation]

    def _configure(self, command: list[int]) -> list[int]:
        self.config, self.precompensation = command[2], command[3]
        return []

    def _lock(self, command: list[int]) -> list[int]:
        self.lock = command[0] >> 7
        return [self.lock << 4]

    def _version(self, command: list[int]) -> list[int]:
        return [VERSION_82077]

    def _invalid(self, command: list[int]) -> list[int]:
        return [ST0_INVALID]


# Command byte -> (parameter bytes, handler), from the 82077AA's command set (table 5-1).
COMMANDS = {
    0x03: (2, FloppyController._specify),
    0x08: (0, FloppyController._sense_interrupt),
    0x0E: (0, FloppyController._dumpreg),
    0x10: (0, FloppyController._version),
    0x13: (3, FloppyController._configure),
    0x14: (0, FloppyController._lock),  # unlock
    0x94: (0, FloppyController._lock),
}
