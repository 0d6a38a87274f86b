"""The PS/2 mouse behind the 8042's auxiliary port (kbc.py), with nobody moving it.

It answers the commands a driver sends through 0xD4 as QEMU 7.2's mouse
(hw/input/ps2.c, ps2_write_mouse) answers them: every command is acknowledged with
0xFA; get ID answers its type (0, or 3 once the rates 200, 100, 80 have been set in a
row: the IntelliMouse knock Linux's psmouse sends, or 4 after 200, 200, 80); status
request answers status, resolution and sample rate; read data answers a packet with
no movement and no button; set resolution and set sample rate take an argument byte;
reset answers 0xFA 0xAA and the type, and sets the defaults again (100 samples a
second, resolution 2, stream mode, reporting off). In wrap mode every byte but
reset-wrap (0xEC) and reset comes back. A command QEMU does not know gets no answer.
Its bytes wait in a queue as the keyboard's do (ps2device.py).

Departures: nothing moves the mouse and no button is pressed, so in stream mode
with reporting on no packet ever comes.
"""

from pvtool.machine.ps2device import Ps2Device
from pvtool.machine.ps2kbd import ACK, SELF_TEST_PASSED

SET_SCALE11, SET_SCALE21, SET_RESOLUTION, STATUS_REQUEST = 0xE6, 0xE7, 0xE8, 0xE9
SET_STREAM, READ_DATA, RESET_WRAP, SET_WRAP, SET_REMOTE = 0xEA, 0xEB, 0xEC, 0xEE, 0xF0
GET_ID, SET_SAMPLE_RATE, ENABLE, DISABLE, SET_DEFAULTS, RESET = (
    0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xFF)
STATUS_REMOTE, STATUS_ENABLED, STATUS_SCALE21 = 0x40, 0x20, 0x10
# Command -> (status bits it clears, bits it sets): the commands that only flip a bit.
STATUS_COMMANDS = {
    SET_SCALE11: (STATUS_SCALE21, 0), SET_SCALE21: (0, STATUS_SCALE21),
    SET_STREAM: (STATUS_REMOTE, 0), SET_REMOTE: (0, STATUS_REMOTE),
    ENABLE: (0, STATUS_ENABLED), DISABLE: (STATUS_ENABLED, 0),
}
DEFAULT_RATE, DEFAULT_RESOLUTION = 100, 2
PACKET_ALWAYS_ONE = 0x08  # bit 3 of a packet's first byte
# The sample rates that, set in a row, turn the mouse into a wheel mouse (type 3:
# 200, 100, 80) or a five-button one (type 4: 200, 200, 80), as QEMU's
# mouse_detect_state follows them: (state, rate) -> next state, any other rate
# starting again; from states 2 and 3 a rate of 80 sets the type.
KNOCK_STEPS = {(0, 200): 1, (1, 100): 2, (1, 200): 3}
KNOCK_LAST_RATE, KNOCK_TYPES = 80, {2: 3, 3: 4}
WHEEL_TYPES = (3, 4)  # types whose packets have a fourth byte


class Ps2Mouse(Ps2Device):
    def __init__(self):
        super().__init__()
        self.type = 0
        self.wrap = False
        self.awaiting = 0  # a command waiting for its argument byte
        self.knock = 0  # how far the sample rates set so far follow a knock
        self._defaults()

    def _defaults(self) -> None:
        self.rate, self.resolution, self.status = DEFAULT_RATE, DEFAULT_RESOLUTION, 0

    def command(self, value: int) -> None:
        """A byte the driver sent the mouse (0xD4, then the byte at port 0x60)."""
        if self.awaiting:
            self._argument(value)
        elif self.wrap and value not in (RESET_WRAP, RESET):
            self.queue(value)
        elif value in STATUS_COMMANDS:
            clear, set_bits = STATUS_COMMANDS[value]
            self.status = self.status & ~clear | set_bits
            self.queue(ACK)
        else:
            self._command(value)

    def _command(self, value: int) -> None:
        if value in (SET_RESOLUTION, SET_SAMPLE_RATE):
            self.awaiting = value
        elif value in (SET_WRAP, RESET_WRAP):
            self.wrap = value == SET_WRAP
        elif value == SET_DEFAULTS:
            self._defaults()
        elif value == RESET:
            self._defaults()
            self.type, self.wrap = 0, False
            self.queue_bytes.clear()
            self.queue(ACK, SELF_TEST_PASSED, self.type)
            return
        elif value == GET_ID:
            self.queue(ACK, self.type)
            return
        elif value == STATUS_REQUEST:
            self.queue(ACK, self.status, self.resolution, self.rate)
            return
        elif value == READ_DATA:
            self.queue(ACK, PACKET_ALWAYS_ONE, 0, 0, *([0] if self.type in WHEEL_TYPES else []))
            return
        else:
            return  # QEMU answers nothing to a command it does not know
        self.queue(ACK)

    def _argument(self, value: int) -> None:
        command, self.awaiting = self.awaiting, 0
        if command == SET_RESOLUTION:
            self.resolution = value
        else:
            self.rate = value
            self._follow_knock(value)
        self.queue(ACK)

    def _follow_knock(self, rate: int) -> None:
        if self.knock in KNOCK_TYPES and rate == KNOCK_LAST_RATE:
            self.type = KNOCK_TYPES[self.knock]
        self.knock = KNOCK_STEPS.get((self.knock, rate), 0)
