"""The 8042 keyboard controller of a PC (ports 0x60 and 0x64) and IRQ 1.

Port 0x64 reads the status and takes controller commands; port 0x60 reads the output
buffer and takes a command's data byte, or else a byte for the keyboard (ps2kbd.py).
Commands and bits from the IBM PC AT Technical Reference ("Keyboard Controller"),
answered as QEMU 7.2's i8042 answers them; what a kernel finds at entry (status 0x1C,
command byte 0x61: IRQ 1 on, translation to set 1 on, mouse off; output port 0xCF, A20
on) was read from QEMU by guests/cgacon, which prints it on COM1.

IRQ 1 is a level: high while a keyboard byte waits in the output buffer, the command
byte enables the interrupt and the keyboard interface is not disabled (QEMU's
kbd_update_irq). Controller replies share the keyboard's queue, as in QEMU. A byte
sent to the keyboard enables the keyboard interface again, as QEMU's does. Pulsing
output port bit 0 (command 0xFE, or 0xF0-0xFF with bit 0 clear, or writing the output
port with bit 0 clear) resets the machine: the run ends as QEMU -no-reboot ends. A
command QEMU does not know (0xA1, say) is ignored, as QEMU ignores it.

The PS/2 mouse (ps2mouse.py) hangs off the auxiliary interface: command 0xD4 sends
the next data byte to it (and enables the interface again, as QEMU does), 0xD3 puts a
byte in the output buffer as if it had sent it, 0xA7 and 0xA8 disable and enable the
interface. The output buffer shows the keyboard's queue first, then a 0xD3 byte, then
the mouse's queue while the interface is enabled; a mouse byte sets
status bit 5 and, with command byte bit 1 set, holds IRQ 12 high (QEMU's
kbd_update_irq). The values were read from QEMU by guests/portscan.

Departures: the A20 bit of the
output port is kept and read back, but memory above 1 MiB never wraps (pvtool's RAM
has no A20 gate); a reset ends the run at once, where QEMU first runs on to the end
of the translation block that asked for it (up to the next jump: the loop a kernel
waits for its reset in never lets that show).
"""

from collections.abc import Callable

from pvtool.machine.ports import PortBus, Wide
from pvtool.machine.ps2kbd import Ps2Keyboard
from pvtool.machine.ps2mouse import Ps2Mouse

KBC_DATA_PORT, KBC_COMMAND_PORT = 0x60, 0x64
KBC_IRQ = 1

STATUS_OBF = 0x01  # a byte waits in the output buffer
STATUS_SELF_TEST = 0x04  # the system flag: the controller passed its self test
STATUS_AT_ENTRY = 0x1C  # system flag, last write a command, keyboard not locked
COMMAND_BYTE_AT_ENTRY = 0x61
MODE_KBD_INT, MODE_KBD_DISABLED, MODE_TRANSLATE = 0x01, 0x10, 0x40
MODE_MOUSE_DISABLED, MODE_MOUSE_INT = 0x20, 0x02
STATUS_AUX = 0x20  # the byte in the output buffer is the mouse's
MOUSE_IRQ = 12
OUTPORT_AT_ENTRY = 0xCF
OUTPORT_RESET, OUTPORT_A20 = 0x01, 0x02

SELF_TEST_OK, INTERFACE_OK, INPUT_PORT = 0x55, 0x00, 0x80
PULSE_COMMANDS = 0xF0  # 0xF0-0xFF pulse output port bits 3-0 (a clear bit pulses)
# Commands whose next data byte (port 0x60) is theirs, not the keyboard's.
WRITE_MODE, WRITE_OUTPUT_PORT, WRITE_OUTPUT_BUFFER = 0x60, 0xD1, 0xD2
WRITE_MOUSE_BUFFER, WRITE_MOUSE = 0xD3, 0xD4
DATA_COMMANDS = (WRITE_MODE, WRITE_OUTPUT_PORT, WRITE_OUTPUT_BUFFER, WRITE_MOUSE_BUFFER,
                 WRITE_MOUSE)


class _AuxReply:
    """The byte command 0xD3 puts in the output buffer as if the mouse had sent it:
    QEMU queues it as the controller's own (kbd_queue), so it shows even while the
    mouse's interface is disabled."""

    def __init__(self):
        self.byte: int | None = None

    def pending(self) -> bool:
        return self.byte is not None

    def read(self) -> int:
        value, self.byte = self.byte, None
        return value


class Kbc8042:
    def __init__(self, keyboard: Ps2Keyboard, set_irq: Callable[[bool], None],
                 reset: Callable[[str], None], mouse: Ps2Mouse | None = None,
                 set_mouse_irq: Callable[[bool], None] = lambda level: None):
        self.keyboard = keyboard
        self.mouse = mouse or Ps2Mouse()
        self.aux_reply = _AuxReply()
        self.set_mouse_irq = set_mouse_irq
        self.keyboard.on_data = self._update_irq
        self.set_irq = set_irq
        self.reset = reset
        self.status = STATUS_AT_ENTRY
        self.mode = COMMAND_BYTE_AT_ENTRY
        self.outport = OUTPORT_AT_ENTRY
        self.data_command = 0  # a command waiting for its data byte
        self.keyboard.translate = bool(self.mode & MODE_TRANSLATE)

    def register(self, ports: PortBus) -> None:
        # QEMU's i8042 ports are one-port regions: a wide access repeats the register.
        ports.register(self, KBC_DATA_PORT, 1, width=1, wide=Wide.SAME_REGISTER)
        ports.register(_StatusCommandPort(self), KBC_COMMAND_PORT, 1, width=1,
                       wide=Wide.SAME_REGISTER)

    # -- port 0x60 ---------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        value = (self._source() or self.keyboard).read()
        self._update_irq()
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        self._write_data(value)
        self._update_irq()

    # -- port 0x64 ---------------------------------------------------------------------
    def read_status(self) -> int:
        source = self._source()
        status = self.status & ~(STATUS_OBF | STATUS_AUX)
        if source is not None:
            status |= STATUS_OBF | (0 if source is self.keyboard else STATUS_AUX)
        return status

    def _source(self) -> Ps2Keyboard | Ps2Mouse | _AuxReply | None:
        """Whose byte the output buffer holds: the keyboard's (with the controller's
        replies), else a byte written as the mouse's (0xD3), else the mouse's own
        while its interface is enabled."""
        if self.keyboard.pending():
            return self.keyboard
        if self.aux_reply.pending():
            return self.aux_reply
        if self.mouse.pending() and not self.mode & MODE_MOUSE_DISABLED:
            return self.mouse
        return None

    def command(self, command: int) -> None:
        self._command(command)
        self._update_irq()

    def _update_irq(self) -> None:
        source = self._source()
        self.set_irq(source is self.keyboard and bool(self.mode & MODE_KBD_INT)
                     and not self.mode & MODE_KBD_DISABLED)
        self.set_mouse_irq(source not in (None, self.keyboard)
                           and bool(self.mode & MODE_MOUSE_INT))

    def _command(self, command: int) -> None:
        if command >= PULSE_COMMANDS:
            if not command & OUTPORT_RESET:
                self.reset(f"8042 pulsed the reset line (command {command:#04x})")
            return
        if command in DATA_COMMANDS:
            self.data_command = command
            return
        reply = self._answer(command)
        if reply is not None:
            self.keyboard.queue(reply)

    def _answer(self, command: int) -> int | None:
        """What a command puts in the output buffer (None: nothing)."""
        if command == 0x20:
            return self.mode
        if command == 0xAA:
            self.status |= STATUS_SELF_TEST
            return SELF_TEST_OK
        if command in (0xA9, 0xAB):  # mouse, keyboard interface tests
            return INTERFACE_OK
        if command == 0xC0:
            return INPUT_PORT
        if command == 0xD0:
            return self.outport | (0x10 if self.keyboard.pending() else 0)
        self._switch(command)
        return None

    def _switch(self, command: int) -> None:
        """The commands that only flip a bit."""
        if command in (0xAD, 0xAE):
            self.mode = self.mode | MODE_KBD_DISABLED if command == 0xAD else \
                self.mode & ~MODE_KBD_DISABLED
        elif command in (0xA7, 0xA8):
            self.mode = self.mode | MODE_MOUSE_DISABLED if command == 0xA7 else \
                self.mode & ~MODE_MOUSE_DISABLED
        elif command in (0xDD, 0xDF):
            self.outport = self.outport & ~OUTPORT_A20 if command == 0xDD else \
                self.outport | OUTPORT_A20

    def _write_data(self, value: int) -> None:
        command, self.data_command = self.data_command, 0
        if command == 0:
            self.mode &= ~MODE_KBD_DISABLED  # a byte for the keyboard enables its interface
            self.keyboard.command(value)
        elif command == WRITE_MODE:
            self.mode = value
            self.keyboard.translate = bool(value & MODE_TRANSLATE)
        elif command == WRITE_OUTPUT_BUFFER:
            self.keyboard.queue(value)
        elif command == WRITE_MOUSE:
            self.mode &= ~MODE_MOUSE_DISABLED  # as for the keyboard, QEMU enables it
            self.mouse.command(value)
        elif command == WRITE_MOUSE_BUFFER:
            self.aux_reply.byte = value
        elif command == WRITE_OUTPUT_PORT:
            self.outport = value
            if not value & OUTPORT_RESET:
                self.reset("8042 output port written with the reset bit clear")


class _StatusCommandPort:
    """Port 0x64: the status register to read, the controller's commands to write."""

    def __init__(self, kbc: Kbc8042):
        self.kbc = kbc

    def read(self, offset: int, size: int) -> int:
        return self.kbc.read_status()

    def write(self, offset: int, size: int, value: int) -> None:
        self.kbc.command(value)
