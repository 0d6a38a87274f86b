"""The Intel 8254 programmable interval timer (ports 0x40-0x43) on virtual time.

Three counters share a 1,193,182 Hz input clock. Nothing here reads the host's clock:
the run loop moves the PIT on with `advance(ticks)` and asks `ticks_to_next_irq()` how
far it may run before channel 0's output next rises (the PC wires OUT0 to IRQ0).
Sections are cited by their titles in the Intel 8254 datasheet:
"Control Word Format", "Counter Latch Command", "Read-Back Command", "Mode
Definitions", "Operations Common to All Modes".

Each counter is modelled, as QEMU's hw/timer/i8254_common.c does, by the clock ticks it
has counted since its count was loaded; its value and its OUT pin are functions of
that number. Departures from the datasheet:
- A count takes effect when written (the datasheet loads it on the next CLK pulse, and
  in modes 2 and 3 a count written while counting waits for the end of the period:
  here the counter restarts at once, as in QEMU).
- Mode 3 with an odd count reads as QEMU computes it (N - 2n mod N); the period and
  the IRQ rate are exact.
- Modes 1 and 5 start on a rising GATE edge (`set_gate`); channels 0 and 1 have their
  gates tied high on a PC, so there these modes never trigger (QEMU starts them at the
  count write).
- Reading the control port (0x43) returns 0, as QEMU does; the chip drives nothing.
- Channel 2's gate starts high, so that it counts without a port 0x61 device; QEMU
  resets it low, with port 0x61's bit 0.

Where QEMU 7.2 departs from the datasheet, the datasheet is followed: a read-back
status shows NULL COUNT from a control word until the count is written (QEMU never
sets it), and OUT is low after a mode 0 control word and high in mode 2 but for the
last tick of each period (QEMU reports the opposite in both cases).
"""

from collections.abc import Callable

PIT_HZ = 1_193_182
PIT_BASE, PIT_PORTS = 0x40, 4
CONTROL_PORT = 3

ACCESS_LATCH, ACCESS_LSB, ACCESS_MSB, ACCESS_WORD = 0, 1, 2, 3
READ_BACK = 3  # the SC field value that makes a control word a read-back command
READ_BACK_NO_COUNT, READ_BACK_NO_STATUS = 0x20, 0x10
STATUS_OUT, STATUS_NULL_COUNT = 0x80, 0x40

# Coalescing: however many periods one advance() covers, IRQ0 gets one edge. The PIC
# latches a single edge per line anyway, and a run loop that advances in large steps
# (a halted guest) must not turn one long sleep into a storm of catch-up interrupts.
MAX_IRQS_PER_ADVANCE = 1


def _from_bcd(value: int) -> int:
    return sum(((value >> (4 * digit)) & 0xF) * 10**digit for digit in range(4))


def _to_bcd(value: int) -> int:
    return sum((value // 10**digit % 10) << (4 * digit) for digit in range(4))


class PitChannel:
    """One counter: its programming, its counting element and its output latches."""

    def __init__(self, gate: bool):
        self.gate = gate
        self.mode = 0
        self.access = ACCESS_WORD
        self.bcd = False
        self.count = 0x10000  # the initial count; 0 written means 2**16 (10**4 in BCD)
        self.counting = False  # a count was loaded (and, in modes 1 and 5, triggered)
        self.elapsed = 0  # clock ticks counted since the count was loaded
        self.null_count = True
        self._written_lsb: int | None = None  # the first byte of a two-byte count
        self._read_msb_next = False
        self._latched: list[int] = []  # latched count bytes still to be read
        self._status: int | None = None

    # -- programming -------------------------------------------------------------
    def control(self, access: int, mode: int, bcd: bool) -> None:
        """A control word resets the counter's logic; OUT goes low in mode 0 and
        high in the others, and counting stops until a count is written
        ("Operations Common to All Modes")."""
        self.access = access
        self.mode = mode & 3 if mode >= 6 else mode  # 110b and 111b are modes 2 and 3
        self.bcd = bcd
        self.counting = False
        self.elapsed = 0
        self.null_count = True
        self._written_lsb = None
        self._read_msb_next = False
        self._latched = []
        self._status = None

    def write_count_byte(self, value: int) -> None:
        if self.access == ACCESS_LSB:
            self._load(value)
        elif self.access == ACCESS_MSB:
            self._load(value << 8)
        elif self._written_lsb is None:
            self._written_lsb = value
            if self.mode == 0:
                self.counting = False  # mode 0: the first byte stops the count
        else:
            self._load(self._written_lsb | value << 8)
            self._written_lsb = None

    def _load(self, raw: int) -> None:
        count = _from_bcd(raw) if self.bcd else raw
        self.count = count or (10**4 if self.bcd else 0x10000)
        self.elapsed = 0
        self.null_count = False
        self.counting = self.mode not in (1, 5)

    def set_gate(self, level: bool) -> None:
        """A rising edge triggers modes 1 and 5 and reloads modes 2 and 3; a low
        gate suspends counting in modes 0, 2, 3 and 4 ("Mode Definitions")."""
        rising = level and not self.gate
        self.gate = level
        if rising and self.mode in (1, 2, 3, 5) and not self.null_count:
            self.elapsed = 0
            self.counting = True

    def advance(self, ticks: int) -> int:
        """Count TICKS clock pulses; return how many rising edges OUT made."""
        if not self.counting or (not self.gate and self.mode not in (1, 5)):
            return 0
        before = self.elapsed
        self.elapsed += ticks
        return self._edges_until(self.elapsed) - self._edges_until(before)

    # -- counting ----------------------------------------------------------------
    def _edges_until(self, n: int) -> int:
        """Rising edges of OUT within the first N ticks after the load: every
        period in modes 2 and 3, at terminal count in modes 0 and 1, one tick after
        it in the strobe modes 4 and 5."""
        if self.mode in (2, 3):
            return n // self.count
        if self.mode in (0, 1):
            return int(n >= self.count)
        return int(n >= self.count + 1)

    def ticks_to_next_edge(self) -> int | None:
        if not self.counting or (not self.gate and self.mode not in (1, 5)):
            return None
        n = self.elapsed
        if self.mode in (2, 3):
            return self.count - n % self.count
        target = self.count if self.mode in (0, 1) else self.count + 1
        return target - n if n < target else None

    def value(self) -> int:
        """The counting element, as QEMU's pit_get_count computes it."""
        n, count = self.elapsed, self.count
        if not self.counting:
            value = count
        elif self.mode == 2:
            value = count - n % count
        elif self.mode == 3:
            value = count - (2 * n) % count
        else:
            value = count - n  # modes 0, 1, 4 and 5 wrap after terminal count
        if self.bcd:
            return _to_bcd(value % 10**4)
        return value & 0xFFFF

    def out(self) -> bool:
        """The OUT pin (QEMU's pit_get_out, with the gate and null states)."""
        n, count = self.elapsed, self.count
        if self.mode == 0:
            return self.counting and n >= count
        if not self.counting or (self.mode in (2, 3) and not self.gate):
            return True
        if self.mode == 1:
            return n >= count
        if self.mode == 2:
            return n % count != count - 1
        if self.mode == 3:
            return n % count < (count + 1) // 2
        return n != count

    # -- reading -----------------------------------------------------------------
    def latch_count(self) -> None:
        """"Counter Latch Command": a second latch before the first is read is ignored."""
        if self._latched:
            return
        value = self.value()
        low, high = value & 0xFF, value >> 8
        self._latched = {ACCESS_LSB: [low], ACCESS_MSB: [high]}.get(self.access, [low, high])

    def latch_status(self) -> None:
        if self._status is not None:
            return
        self._status = ((STATUS_OUT if self.out() else 0)
                        | (STATUS_NULL_COUNT if self.null_count else 0)
                        | self.access << 4 | self.mode << 1 | int(self.bcd))

    def read_byte(self) -> int:
        """Status first if latched, then a latched count, then the live counter,
        byte by byte as the access mode says ("Read Operations")."""
        if self._status is not None:
            status, self._status = self._status, None
            return status
        if self._latched:
            return self._latched.pop(0)
        value = self.value()
        if self.access == ACCESS_LSB:
            return value & 0xFF
        if self.access == ACCESS_MSB:
            return value >> 8
        msb, self._read_msb_next = self._read_msb_next, not self._read_msb_next
        return value >> 8 if msb else value & 0xFF


class Pit8254:
    """The PC's PIT: channel 0 raises IRQ0 through `on_irq0`; channels 1 and 2 count
    with nothing wired to their outputs (port 0x61, which gates channel 2 and reads
    OUT2, belongs to another device: it calls `set_gate(2, ...)` and `out(2)`)."""

    def __init__(self, on_irq0: Callable[[], None]):
        self._on_irq0 = on_irq0
        self.channels = [PitChannel(gate=True) for _ in range(3)]
        self.irq0_edges = 0  # rising edges of OUT0 since power-on
        self.irq0_coalesced = 0  # of those, how many were folded into another IRQ

    # -- virtual time ------------------------------------------------------------
    def advance(self, ticks: int) -> None:
        """Move every counter on by TICKS input-clock pulses; fire IRQ0 at most
        MAX_IRQS_PER_ADVANCE times, however many periods passed."""
        if ticks < 0:
            raise ValueError(f"the PIT cannot go back in time ({ticks} ticks)")
        edges = self.channels[0].advance(ticks)
        for channel in self.channels[1:]:
            channel.advance(ticks)
        self.irq0_edges += edges
        fired = min(edges, MAX_IRQS_PER_ADVANCE)
        self.irq0_coalesced += edges - fired
        for _ in range(fired):
            self._on_irq0()

    def ticks_to_next_irq(self) -> int | None:
        """Ticks until OUT0 next rises; None when channel 0 will not raise IRQ0."""
        return self.channels[0].ticks_to_next_edge()

    def set_gate(self, channel: int, level: bool) -> None:
        self.channels[channel].set_gate(level)

    def out(self, channel: int) -> bool:
        return self.channels[channel].out()

    # -- the ports ---------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if offset == CONTROL_PORT:
            return 0
        return self.channels[offset].read_byte()

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        if offset != CONTROL_PORT:
            self.channels[offset].write_count_byte(value)
            return
        select, access = value >> 6, (value >> 4) & 3
        if select == READ_BACK:
            self._read_back(value)
        elif access == ACCESS_LATCH:
            self.channels[select].latch_count()
        else:
            self.channels[select].control(access, (value >> 1) & 7, bool(value & 1))

    def _read_back(self, value: int) -> None:
        """"Read-Back Command": bits 3-1 select counters 2-0; COUNT and STATUS are
        active low. Each selected counter latches as a latch command would."""
        for index, channel in enumerate(self.channels):
            if not value & (2 << index):
                continue
            if not value & READ_BACK_NO_STATUS:
                channel.latch_status()
            if not value & READ_BACK_NO_COUNT:
                channel.latch_count()
