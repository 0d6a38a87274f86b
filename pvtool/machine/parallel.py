"""The parallel port LPT1 at 0x378-0x37F (the BIOS data area lists it), as QEMU 7.2's
i440FX PC has it: an ISA parallel port in standard mode (hw/char/parallel.c,
parallel_ioport_read_sw and parallel_ioport_write_sw).

Registers: data (0), status (1) and control (2); the other five ports read 0xFF.
The status register holds busy, acknowledge, on-line, error and time-out as QEMU
keeps them (bit 7 is QEMU's busy bit as stored, not the inverted line a printer
drives); the control register reads back with bits 6 and 7 set. Clearing the
control register's INIT bit resets the status; with SELECT set, raising STROBE
clears busy and lowering it sets busy again, as QEMU's port handshakes with its
character device; a status read with busy and STROBE both clear toggles
acknowledge, and sets busy when it sets acknowledge. The data byte SeaBIOS's
detection left (0xAA) is where a kernel finds it; with the control register's
direction bit set, data reads the input lines, which nothing drives (0xFF).

Departures: the port is connected to nothing (QEMU's default is a virtual console
that `-display none` shows nowhere), so a strobed byte goes nowhere; IRQ 7 never
rises.
"""

from pvtool.machine.ports import PortBus, Wide

LPT1_BASE, LPT_PORTS = 0x378, 8
DATA, STATUS, CONTROL = 0, 1, 2
STATUS_RESET = 0xD9  # busy, acknowledge, on-line, error, time-out
STATUS_BUSY, STATUS_ACK = 0x80, 0x40
CONTROL_FIXED = 0xC0  # bits 6 and 7 read as set
CONTROL_INIT, CONTROL_SELECT, CONTROL_STROBE, CONTROL_INPUT = 0x04, 0x08, 0x01, 0x20
CONTROL_RESET = CONTROL_FIXED | CONTROL_SELECT | CONTROL_INIT
DATA_AFTER_SEABIOS = 0xAA  # the pattern SeaBIOS's detection writes and reads back
FLOATING = 0xFF


class ParallelPort:
    def __init__(self):
        self.data = DATA_AFTER_SEABIOS
        self.status = STATUS_RESET
        self.control = CONTROL_RESET

    def register(self, ports: PortBus, base: int = LPT1_BASE) -> None:
        ports.register(self, base, LPT_PORTS, width=1, wide=Wide.PORTIO)

    def read(self, offset: int, size: int) -> int:
        if offset == DATA:
            return FLOATING if self.control & CONTROL_INPUT else self.data
        if offset == STATUS:
            return self._read_status()
        return self.control if offset == CONTROL else FLOATING

    def _read_status(self) -> int:
        value = self.status
        if not self.status & STATUS_BUSY and not self.control & CONTROL_STROBE:
            if self.status & STATUS_ACK:
                self.status &= ~STATUS_ACK
            else:
                self.status |= STATUS_ACK | STATUS_BUSY
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == DATA:
            self.data = value
        elif offset == CONTROL:
            self._write_control(value | CONTROL_FIXED)

    def _write_control(self, value: int) -> None:
        if not value & CONTROL_INIT:
            self.status = STATUS_RESET
        elif value & CONTROL_SELECT and value & CONTROL_STROBE:
            self.status &= ~STATUS_BUSY
        elif value & CONTROL_SELECT and self.control & CONTROL_STROBE:
            self.status |= STATUS_BUSY
        self.control = value
