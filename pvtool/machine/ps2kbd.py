"""The PS/2 keyboard behind the 8042 (kbc.py), and the person typing on it.

It answers the commands a driver sends through port 0x60 as QEMU 7.2's keyboard
(hw/input/ps2.c) answers them: acknowledge 0xFA, echo 0xEE, identify 0xFA 0xAB 0x41
(0x83 untranslated), which scan code set 0xFA 0xFA 0x41 (set 2, translated), reset
0xFA 0xAA, scanning on and off; a command it does not know gets 0xFE (resend). Its
bytes wait in the queue every PS/2 device has (ps2device.py: beyond QUEUE_SIZE they are
lost, and reading an empty queue gives the last byte again, as QEMU's does).

The typing: `--keys` text becomes scan codes (keys.py), and one key event (a key
going down or up) reaches the queue every KEY_EVENT_MS of virtual time, the first
KEY_EVENT_MS after power-on: QEMU's `sendkey` holds each key that long. A kernel that
waits with hlt skips straight to each event, so typing costs it no instructions.

Departures: scan code set 2 untranslated is never sent (typed keys are set 1 even if
the command byte turns translation off, or the driver selects another set); the LEDs
and the typematic rate are acknowledged and forgotten; there is no key repeat.
"""

from collections import deque
from collections.abc import Callable, Iterable

from pvtool.machine.ps2device import Ps2Device

ACK, ECHO, RESEND, SELF_TEST_PASSED = 0xFA, 0xEE, 0xFE, 0xAA
ID_FIRST, ID_TRANSLATED, ID_SET2 = 0xAB, 0x41, 0x83
KEY_CLOCK_HZ = 1000  # the typing's clock counts milliseconds
KEY_EVENT_MS = 100  # QEMU's sendkey hold time
# Commands followed by an argument byte (LEDs, typematic rate, scan code set).
SCAN_CODE_SET = 0xF0
TAKES_ARGUMENT = (0xED, 0xF3, SCAN_CODE_SET)
# What "which scan code set?" (0xF0 0x00) answers: set 2, as the 8042 translates it.
SET2, SET2_TRANSLATED = 0x02, 0x41


class Ps2Keyboard(Ps2Device):
    def __init__(self, typed: Iterable[int] = ()):
        self.typed = deque(typed)  # scan codes still to type, one per key event
        super().__init__()
        self.translate = True  # the 8042 sets it from its command byte
        self.scanning = True
        self.awaiting = 0  # a command waiting for its argument byte
        self.ms = 0  # virtual milliseconds since power-on
        self.next_event_ms = KEY_EVENT_MS
        self.on_data: Callable[[], None] = lambda: None  # the 8042 updates IRQ 1

    def command(self, value: int) -> None:
        """A byte the driver sent the keyboard."""
        if self.awaiting:
            command, self.awaiting = self.awaiting, 0
            self.queue(ACK)
            if command == SCAN_CODE_SET and value == 0:
                self.queue(SET2_TRANSLATED if self.translate else SET2)
        elif value in TAKES_ARGUMENT:
            self.awaiting = value
            self.queue(ACK)
        elif value == ECHO:
            self.queue(ECHO)
        elif value == 0xF2:
            self.queue(ACK, ID_FIRST, ID_TRANSLATED if self.translate else ID_SET2)
        elif value in (0xF4, 0xF5, 0xF6):  # enable; disable; defaults, enabled
            self.scanning = value != 0xF5
            self.queue(ACK)
        elif value == 0xFF:
            self.scanning = True
            self.queue(ACK, SELF_TEST_PASSED)
        else:
            self.queue(RESEND)

    # -- the typing, a timed device on the machine's clock ----------------------------
    def advance(self, ticks: int) -> None:
        self.ms += ticks
        while self.typed and self.next_event_ms <= self.ms:
            code = self.typed.popleft()
            if self.scanning:
                self.queue(code)
            self.next_event_ms += KEY_EVENT_MS
            self.on_data()

    def ticks_to_next_irq(self) -> int | None:
        if not self.typed:
            return None
        return max(self.next_event_ms - self.ms, 1)
