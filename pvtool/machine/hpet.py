"""The HPET at 0xFED00000 (IA-PC HPET specification 1.0a, section 2.3, "Register
Descriptions"), as QEMU 7.2's hw/timer/hpet.c presents it and guests/pcprobe measured
it: vendor 0x8086, revision 1, a 64-bit main counter of 10 ns ticks, three timers
with 64-bit and periodic capability that may route only to IRQ 2, and legacy
replacement routing (timer 0 on IRQ 0, timer 1 on IRQ 8, while the PIT's and the RTC's
own interrupts are held off: `legacy_replacement`).

The main counter runs on virtual time (machine.add_timer at HPET_HZ). A timer is armed
when its configuration, its comparator or the HPET's enable is written, and fires when
the counter reaches its comparator (in 32-bit mode, the counter's low half); a
comparator already behind the counter fires at once, as QEMU's hpet_calculate_diff
makes it. A periodic timer then adds its period to the comparator; a one-shot timer
disarms. Edge-triggered timers pulse their line and leave the status register alone;
level-triggered ones set their status bit and hold the line high until a 1 is written
to it (QEMU's update_irq).

A guest polling the running main counter would see it stand still until the slice
ends (virtual time advances by slices, not by the instruction), so reading the same
value of its low half twice ends the slice. Unicorn abandons the read it was stopped in and runs it
again in the next slice, which then finds the counter moved.

Departures: no FSB (MSI) delivery, though its route register keeps what is written;
a one-shot timer in 32-bit mode does not fire again when the counter's low half wraps;
routes of 16 and above are not inverted as QEMU's ICH PIRQ folding does.
"""

from collections.abc import Callable

HPET_BASE, HPET_SIZE = 0xFED00000, 0x1000  # QEMU decodes 0x400; the rest reads 0 there too
HPET_HZ = 100_000_000  # QEMU's 10 ns tick
PERIOD_FS = 10**15 // HPET_HZ
VENDOR, REVISION, TIMERS = 0x8086, 1, 3
CAP_LEGACY_ROUTE, CAP_COUNTER_64 = 1 << 15, 1 << 13
# The capabilities register's low half, which the ACPI HPET table's block id copies.
BLOCK_ID = VENDOR << 16 | CAP_LEGACY_ROUTE | CAP_COUNTER_64 | (TIMERS - 1) << 8 | REVISION
ROUTE_CAP = 1 << 2  # every timer may route to IRQ 2 only (QEMU's default)

CAP_ID, CONFIG, STATUS, COUNTER = 0x000, 0x010, 0x020, 0x0F0
TIMER_BASE, TIMER_STRIDE = 0x100, 0x20
TIMER_CONFIG, TIMER_COMPARATOR, TIMER_FSB = 0x00, 0x08, 0x10

CONFIG_ENABLE, CONFIG_LEGACY = 0x1, 0x2
T_LEVEL, T_ENABLE, T_PERIODIC, T_PERIODIC_CAP, T_SIZE_CAP = 0x2, 0x4, 0x8, 0x10, 0x20
T_VAL_SET, T_32BIT = 0x40, 0x100
T_ROUTE_SHIFT, T_ROUTE_MASK = 9, 0x1F
T_WRITABLE = 0x7F4E  # QEMU's HPET_TN_CFG_WRITE_MASK
LEGACY_LINES = (0, 8)  # timer 0 and timer 1 under legacy replacement
MASK32, MASK64 = 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF


class HpetTimer:
    """One comparator: its configuration, comparator, period and whether it is armed."""

    def __init__(self):
        self.config = T_PERIODIC_CAP | T_SIZE_CAP
        self.comparator = MASK64
        self.period = 0
        self.fsb = 0
        self.armed = False

    @property
    def wide(self) -> bool:
        return not self.config & T_32BIT

    def until_due(self, counter: int) -> int:
        """Ticks until the comparator matches (0 or less: due), signed as QEMU's
        hpet_calculate_diff takes the difference."""
        bits, mask = (64, MASK64) if self.wide else (32, MASK32)
        diff = (self.comparator - counter) & mask
        return diff - (1 << bits) if diff >> (bits - 1) else diff


class Hpet:
    """The HPET's registers. `set_line(line, level)` drives an interrupt line."""

    def __init__(self, set_line: Callable[[int, bool], None],
                 end_slice: Callable[[], None] = lambda: None):
        self._set_line = set_line
        self._end_slice = end_slice
        self.config = 0
        self.status = 0
        self.counter = 0
        self._last_read: int | None = None  # the counter's value at its last read
        self.timers = [HpetTimer() for _ in range(TIMERS)]

    @property
    def enabled(self) -> bool:
        return bool(self.config & CONFIG_ENABLE)

    @property
    def legacy_replacement(self) -> bool:
        """Timers 0 and 1 own IRQ 0 and IRQ 8: the PIT and the RTC are held off."""
        return bool(self.config & CONFIG_LEGACY)

    # -- virtual time ------------------------------------------------------------
    def advance(self, ticks: int) -> None:
        if self.enabled:
            self.counter = (self.counter + ticks) & MASK64
            self._fire_due()

    def ticks_to_next_irq(self) -> int | None:
        if not self.enabled:
            return None
        waits = [max(timer.until_due(self.counter), 1) for timer in self.timers
                 if timer.armed and timer.config & T_ENABLE]
        return min(waits, default=None)

    def _fire_due(self) -> None:
        for index, timer in enumerate(self.timers):
            if timer.armed and timer.until_due(self.counter) <= 0:
                self._expire(index, timer)

    def _expire(self, index: int, timer: HpetTimer) -> None:
        """One interrupt however many periods passed (coalesced, as the PIT's)."""
        if timer.config & T_PERIODIC and timer.period:
            while timer.until_due(self.counter) <= 0:
                timer.comparator = (timer.comparator + timer.period) & (
                    MASK64 if timer.wide else MASK32)
        else:
            timer.armed = False
        if timer.config & T_ENABLE:
            self._raise(index, timer)

    def _route(self, index: int, timer: HpetTimer) -> int:
        if self.legacy_replacement and index < len(LEGACY_LINES):
            return LEGACY_LINES[index]
        return timer.config >> T_ROUTE_SHIFT & T_ROUTE_MASK

    def _raise(self, index: int, timer: HpetTimer) -> None:
        line = self._route(index, timer)
        if timer.config & T_LEVEL:
            self.status |= 1 << index
            self._set_line(line, True)
        else:
            self._set_line(line, True)
            self._set_line(line, False)

    # -- registers ---------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if offset == COUNTER:
            self._counter_polled()
        if size == 8:
            return self._register(offset & ~7)
        value = self._register(offset & ~7)
        return value >> 32 if offset & 4 else value & MASK32

    def _register(self, register: int) -> int:
        if register == CAP_ID:
            return PERIOD_FS << 32 | BLOCK_ID
        if register == CONFIG:
            return self.config
        if register == STATUS:
            return self.status
        if register == COUNTER:
            return self.counter
        timer, field = self._timer_field(register)
        if timer is None:
            return 0
        return {TIMER_CONFIG: ROUTE_CAP << 32 | timer.config,
                TIMER_COMPARATOR: timer.comparator, TIMER_FSB: timer.fsb}.get(field, 0)

    def _counter_polled(self) -> None:
        """The low half (or the whole) of the running counter read: a second read
        of the same value ends the slice (see the module's doc). Reading the high
        half never does, so a low-then-high pair is not torn."""
        if self.enabled and self.counter == self._last_read:
            self._end_slice()
        self._last_read = self.counter

    def _timer_field(self, register: int) -> tuple[HpetTimer | None, int]:
        index, field = divmod(register - TIMER_BASE, TIMER_STRIDE)
        if register < TIMER_BASE or index >= TIMERS:
            return None, 0
        return self.timers[index], field

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 8:
            self.write(offset, 4, value & MASK32)
            self.write(offset + 4, 4, value >> 32)
            return
        register, high = offset & ~7, bool(offset & 4)
        value &= MASK32
        if register == CONFIG and not high:
            self._write_config(value)
        elif register == STATUS and not high:
            self._clear_status(value)
        elif register == COUNTER and not self.enabled:
            self.counter = _half(self.counter, value, high)
        else:
            timer, field = self._timer_field(register)
            if timer is not None:
                self._write_timer(timer, field, value, high)

    def _write_config(self, value: int) -> None:
        was_enabled = self.enabled
        self.config = value & (CONFIG_ENABLE | CONFIG_LEGACY)
        if self.enabled and not was_enabled:
            for timer in self.timers:
                timer.armed = True
            self._fire_due()

    def _clear_status(self, value: int) -> None:
        """Writing 1 to a level-triggered timer's bit clears it and drops its line."""
        for index, timer in enumerate(self.timers):
            if value & self.status & 1 << index:
                self.status &= ~(1 << index)
                self._set_line(self._route(index, timer), False)

    def _write_timer(self, timer: HpetTimer, field: int, value: int, high: bool) -> None:
        if field == TIMER_CONFIG and not high:
            timer.config = (timer.config & ~T_WRITABLE) | (value & T_WRITABLE)
            if timer.config & T_32BIT:
                timer.comparator &= MASK32
                timer.period &= MASK32
            timer.armed = True
        elif field == TIMER_COMPARATOR:
            self._write_comparator(timer, value, high)
        elif field == TIMER_FSB:
            timer.fsb = _half(timer.fsb, value, high)
        if self.enabled:
            self._fire_due()

    def _write_comparator(self, timer: HpetTimer, value: int, high: bool) -> None:
        """A one-shot timer, or a periodic one with VAL_SET, takes the comparator; a
        periodic one always takes the period (QEMU's HPET_TN_CMP writes). In 32-bit
        mode the high half is ignored."""
        if high and not timer.wide:
            return
        periodic = timer.config & T_PERIODIC
        if not periodic or timer.config & T_VAL_SET:
            timer.comparator = _half(timer.comparator, value, high)
        if periodic:
            timer.period = _half(timer.period, value, high)
        timer.config &= ~T_VAL_SET
        timer.armed = True


def _half(old: int, value: int, high: bool) -> int:
    """OLD with its high or low 32 bits replaced by VALUE."""
    return (old & MASK32) | value << 32 if high else (old & ~MASK32) | value
