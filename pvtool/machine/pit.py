"""The 8254 programmable interval timer (ports 0x40-0x43) as QEMU 7.2 presents it, on
virtual time.

Three counters share a 1,193,182 Hz input clock. Nothing here reads the host's clock:
the run loop moves the PIT on with `advance(ticks)` and asks `ticks_to_next_irq()` how
far it may run before channel 0's output next rises (the PC wires OUT0 to IRQ0).

QEMU is the reference (hw/timer/i8254.c, i8254_common.c), measured with guests/pitprobe
(tests/e2e/test_pitprobe.py runs it on both). As in QEMU, each counter is the clock
ticks counted since its count was loaded, and its value and its OUT pin are functions
of that number. Where QEMU follows the Intel 8254 datasheet its sections are cited
("Control Word Format", "Counter Latch Command", "Read-Back Command", "Read
Operations"); where it does not, QEMU is followed:
- Every counter always counts: from power-on (mode 3, a count of 65536, no access
  mode: bytes read and written are low bytes until a control word), and on through a
  control word, which sets the mode and the access but neither stops the count nor
  moves OUT. A count takes effect when written, in every mode; the first byte of a
  two-byte count changes nothing.
- The gate only restarts: a rising edge reloads the count in modes 1, 2, 3 and 5. A
  low gate neither holds a count nor forces OUT high. Channel 2's gate (port 0x61 bit
  0) starts low, those of channels 0 and 1 high.
- OUT: mode 0 rises at terminal count and stays high (through a control word too);
  mode 1 is high from the load until terminal count; mode 2 is high only for the tick
  of each reload; mode 3 for the first half of each period; modes 4 and 5 only for the
  tick of terminal count (those one-tick pulses are QEMU's pit_get_out: the probe sees
  OUT low around them). Modes 6 and 7 stay as written (the status shows them): they
  count as mode 2 and drive OUT as mode 0. IRQ0 follows OUT0 at each load and gate
  edge, as QEMU sets the line there: a load in mode 1 or 3 raises it at once.
- Counts are binary in BCD mode too (only the status keeps the BCD bit); 0 is 65536.
  Mode 3 with an odd count reads N - 2n mod N.
- The read-back status never sets NULL COUNT; a latched count or status outlives a
  control word; a latch command before any control word latches nothing.
- Reading the control port (0x43) returns 0.
- Channel 0 is as SeaBIOS leaves it to the kernel: mode 2, word access, 65536.

Departures:
- Channel 0 raises IRQ0 only once the kernel writes its count port: SeaBIOS's 18.2 Hz
  tick is not delivered, since pvtool's 8259 at entry is not SeaBIOS's and IRQ 0 would
  reach a vector the kernel never set. Channel 0's phase at entry is that of a count
  loaded at power-on.
- However many periods one advance() covers, IRQ0 rises once (MAX_IRQS_PER_ADVANCE).
- A control word that raises OUT0 raises IRQ0 at the next advance(); QEMU leaves the
  line until its timer next fires, at the old mode's next transition.
"""

from collections.abc import Callable

PIT_HZ = 1_193_182
PIT_BASE, PIT_PORTS = 0x40, 4
CONTROL_PORT = 3

ACCESS_LATCH, ACCESS_LSB, ACCESS_MSB, ACCESS_WORD = 0, 1, 2, 3
ACCESS_NONE = 0  # QEMU's rw_mode at reset, before any control word
READ_BACK = 3  # the SC field value that makes a control word a read-back command
READ_BACK_NO_COUNT, READ_BACK_NO_STATUS = 0x20, 0x10
STATUS_OUT = 0x80
COUNT_SPAN = 0x10000  # a count of 0 is 65536, and the counter wraps there
RESET_MODE = 3  # QEMU's pit_reset_common: mode 3, counting COUNT_SPAN
CHANNEL0_FIRMWARE_WORD = 0x34  # SeaBIOS's timer setup: channel 0, word, mode 2, binary

# Coalescing: however many periods one advance() covers, IRQ0 gets one edge. The PIC
# latches a single edge per line anyway, and a run loop that advances in large steps
# (a halted guest) must not turn one long sleep into a storm of catch-up interrupts.
MAX_IRQS_PER_ADVANCE = 1


class PitChannel:
    """One counter: its programming, its counting element and its output latches."""

    def __init__(self, gate: bool):
        self.gate = gate
        self.mode = RESET_MODE
        self.access = ACCESS_NONE
        self.bcd = False
        self.count = COUNT_SPAN
        self.elapsed = 0  # clock ticks counted since the count was loaded
        self._written_lsb: int | None = None  # the first byte of a two-byte count
        self._read_msb_next = False
        self._latched: list[int] = []  # latched count bytes still to be read
        self._status: int | None = None

    # -- programming -------------------------------------------------------------
    def control(self, access: int, mode: int, bcd: bool) -> None:
        """A control word sets the access mode (and restarts both byte flip-flops),
        the mode and BCD; the count runs on."""
        self.access = access
        self.mode = mode
        self.bcd = bcd
        self._written_lsb = None
        self._read_msb_next = False

    def write_count_byte(self, value: int) -> bool:
        """Take one byte of a count; return whether it completed one (and loaded it)."""
        if self.access == ACCESS_MSB:
            self._load(value << 8)
        elif self.access != ACCESS_WORD:
            self._load(value)  # the low byte, also before any control word
        elif self._written_lsb is None:
            self._written_lsb = value
            return False
        else:
            self._load(self._written_lsb | value << 8)
            self._written_lsb = None
        return True

    def _load(self, count: int) -> None:
        self.count = count or COUNT_SPAN
        self.elapsed = 0

    def set_gate(self, level: bool) -> None:
        """A rising edge restarts the count in modes 1, 2, 3 and 5."""
        if level and not self.gate and self.mode in (1, 2, 3, 5):
            self.elapsed = 0
        self.gate = level

    def advance(self, ticks: int) -> int:
        """Count TICKS clock pulses; return how many rising edges OUT made."""
        before = self.elapsed
        self.elapsed += ticks
        return self._edges_until(self.elapsed) - self._edges_until(before)

    # -- counting ----------------------------------------------------------------
    def _rising_edges(self) -> tuple[int | None, int | None]:
        """When OUT rises, as ticks since the load: the first time and the period
        between later ones (None: it never does, or only once)."""
        count = self.count
        if self.mode == 1 or (self.mode == 3 and count == 1):
            return None, None  # mode 1 rises only at the load itself
        if self.mode in (2, 3):
            return (count, count) if count > 1 else (1, None)
        return count, None  # modes 0, 4 and 5, and 6 and 7 as mode 0

    def _edges_until(self, n: int) -> int:
        """Rising edges of OUT within the first N ticks after the load."""
        first, period = self._rising_edges()
        if first is None or n < first:
            return 0
        return 1 if period is None else (n - first) // period + 1

    def ticks_to_next_edge(self) -> int | None:
        first, period = self._rising_edges()
        n = self.elapsed
        if first is not None and n < first:
            return first - n
        if period is None:
            return None
        return period - (n - first) % period

    def value(self) -> int:
        """The counting element, as QEMU's pit_get_count computes it."""
        n, count = self.elapsed, self.count
        if self.mode in (0, 1, 4, 5):
            value = count - n  # wraps after terminal count
        elif self.mode == 3:
            value = count - 2 * n % count
        else:
            value = count - n % count  # mode 2, and 6 and 7 as mode 2
        return value % COUNT_SPAN

    def out(self) -> bool:
        """The OUT pin, as QEMU's pit_get_out computes it."""
        n, count = self.elapsed, self.count
        if self.mode == 1:
            return n < count
        if self.mode == 2:
            return n % count == 0 and n != 0
        if self.mode == 3:
            return n % count < (count + 1) // 2
        if self.mode in (4, 5):
            return n == count
        return n >= count  # mode 0, and 6 and 7 as mode 0

    # -- reading -----------------------------------------------------------------
    def latch_count(self) -> None:
        """"Counter Latch Command": a second latch before the first is read is
        ignored, and so is a latch before any control word (QEMU's rw_mode 0)."""
        if self._latched or self.access == ACCESS_NONE:
            return
        value = self.value()
        low, high = value & 0xFF, value >> 8
        self._latched = {ACCESS_LSB: [low], ACCESS_MSB: [high]}.get(self.access, [low, high])

    def latch_status(self) -> None:
        if self._status is not None:
            return
        self._status = (STATUS_OUT if self.out() else 0) | self.access << 4 \
            | self.mode << 1 | int(self.bcd)

    def read_byte(self) -> int:
        """Status first if latched, then a latched count, then the live counter,
        byte by byte as the access mode says ("Read Operations")."""
        if self._status is not None:
            status, self._status = self._status, None
            return status
        if self._latched:
            return self._latched.pop(0)
        value = self.value()
        if self.access == ACCESS_MSB:
            return value >> 8
        if self.access != ACCESS_WORD:
            return value & 0xFF
        msb, self._read_msb_next = self._read_msb_next, not self._read_msb_next
        return value >> 8 if msb else value & 0xFF


class Pit8254:
    """The PC's PIT: channel 0 raises IRQ0 through `on_irq0`; channels 1 and 2 count
    with nothing wired to their outputs (port 0x61, which gates channel 2 and reads
    OUT2, belongs to another device: it calls `set_gate(2, ...)` and `out(2)`)."""

    def __init__(self, on_irq0: Callable[[], None]):
        self._on_irq0 = on_irq0
        self.channels = [PitChannel(gate=index != 2) for index in range(3)]
        self.irq0_edges = 0  # rising edges of OUT0 since IRQ0 was armed
        self.irq0_coalesced = 0  # of those, how many were folded into another IRQ
        self._irq0_armed = False  # the kernel wrote channel 0's count (see Departures)
        self._irq0_line = False  # the level OUT0 last drove IRQ0 to
        self._control(CHANNEL0_FIRMWARE_WORD)
        self.channels[0].write_count_byte(0)
        self.channels[0].write_count_byte(0)

    # -- virtual time ------------------------------------------------------------
    def advance(self, ticks: int) -> None:
        """Move every counter on by TICKS input-clock pulses; fire IRQ0 at most
        MAX_IRQS_PER_ADVANCE times, however many periods passed."""
        if ticks < 0:
            raise ValueError(f"the PIT cannot go back in time ({ticks} ticks)")
        channel0 = self.channels[0]
        raised = channel0.out() and not self._irq0_line  # by a control word
        edges = channel0.advance(ticks) + int(raised)
        for channel in self.channels[1:]:
            channel.advance(ticks)
        self._irq0_line = channel0.out()
        self._raise_irq0(edges)

    def ticks_to_next_irq(self) -> int | None:
        """Ticks until OUT0 next rises; None when channel 0 will not raise IRQ0."""
        if not self._irq0_armed:
            return None
        return self.channels[0].ticks_to_next_edge()

    def set_gate(self, channel: int, level: bool) -> None:
        self.channels[channel].set_gate(level)
        self._drive_irq0()

    def out(self, channel: int) -> bool:
        return self.channels[channel].out()

    def _drive_irq0(self) -> None:
        """A load or a gate edge moved OUT0: IRQ0 follows it at once, as QEMU's
        pit_irq_timer_update sets the line (a control word does not: QEMU leaves the
        line until its timer next fires, see Departures)."""
        level = self.channels[0].out()
        rising = level and not self._irq0_line
        self._irq0_line = level
        self._raise_irq0(int(rising))

    def _raise_irq0(self, edges: int) -> None:
        if not self._irq0_armed:
            return
        self.irq0_edges += edges
        fired = min(edges, MAX_IRQS_PER_ADVANCE)
        self.irq0_coalesced += edges - fired
        for _ in range(fired):
            self._on_irq0()

    # -- the ports ---------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if offset == CONTROL_PORT:
            return 0
        return self.channels[offset].read_byte()

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        if offset == CONTROL_PORT:
            self._control(value)
            return
        self._irq0_armed |= offset == 0
        if self.channels[offset].write_count_byte(value):
            self._drive_irq0()

    def _control(self, value: int) -> None:
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
