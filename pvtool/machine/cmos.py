"""The CMOS RTC and NVRAM of a PC (a Motorola MC146818A, ports 0x70-0x71).

Port 0x70 selects a register (bit 7 is the NMI mask, which lives on the same port);
port 0x71 reads or writes it. Registers 0x00-0x09 are the clock, kept in the format
register B selects (BCD or binary, 24 or 12 hours; MC146818A datasheet, "Time,
calendar and alarm locations"), computed from `clock()` (seconds since the Unix epoch,
UTC) each time one is read. A guest that sets the clock shifts it by an offset.
0x0A-0x0D are the status registers; the rest are NVRAM with what a PC BIOS leaves
there (the IBM AT layout QEMU's hw/rtc/mc146818rtc.c and pc.c fill in).

Interrupts (datasheet, "Interrupts"; QEMU's hw/rtc/mc146818rtc.c is the judge, as
guests/pcprobe measured it): the RTC counts its 32.768 kHz time base on virtual time
(machine.add_timer at RTC_HZ). At the end of every second UF is set, and AF too if
the alarm registers match the time (an alarm byte with its two top bits set matches
anything); while PIE is set, every period of register A's rate sets PF (QEMU runs the
periodic timer only then: without PIE, PF stays clear). A flag newly set whose enable
is on in register B sets IRQF and raises IRQ 8, which stays high until register C is
read; reading C clears it. Writing B recomputes IRQF from the flags already set.

Departures: update-in-progress never shows (UIP reads 0: an update takes no virtual
time); several periods or seconds passing within one step of virtual time set their
flags once (as the PIT coalesces); a halted clock (B's SET) sets no UF.
"""

import calendar
import time
from collections.abc import Callable

CMOS_BASE, CMOS_PORTS = 0x70, 2
NVRAM_SIZE = 128
NMI_DISABLE = 0x80

SECONDS, MINUTES, HOURS, WEEKDAY, DAY, MONTH, YEAR = 0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
CENTURY = 0x32
TIME_REGISTERS = (SECONDS, MINUTES, HOURS, WEEKDAY, DAY, MONTH, YEAR, CENTURY)

A_UIP = 0x80
A_RESET = 0x26  # 32.768 kHz time base, 1024 Hz periodic rate
RTC_HZ = 32768
A_RATE = 0x0F
B_SET, B_PIE, B_AIE, B_UIE, B_DM_BINARY, B_24_HOUR = 0x80, 0x40, 0x20, 0x10, 0x04, 0x02
B_INTERRUPT_ENABLES = 0x70  # PIE, AIE, UIE: the same bits as PF, AF, UF in C
C_IRQF, C_PF, C_AF, C_UF = 0x80, 0x40, 0x20, 0x10
SECONDS_ALARM, MINUTES_ALARM, HOURS_ALARM = 0x01, 0x03, 0x05
ALARM_DONT_CARE = 0xC0
B_RESET = B_24_HOUR  # BCD, 24-hour: what every PC BIOS leaves
D_VRT = 0x80  # valid RAM and time: the battery is good
HOUR_PM = 0x80

BASE_MEMORY_KIB = 640
BASE_MEMORY_LOW, EXTENDED_LOW, EXTENDED_LOW_COPY = 0x15, 0x17, 0x30
ABOVE_16M_LOW = 0x34  # SeaBIOS's: memory above 16 MiB in 64 KiB blocks


class Cmos:
    """The RTC and its NVRAM. `memory_kib` is the machine's RAM, for the memory-size
    bytes firmware and old kernels read."""

    def __init__(self, clock: Callable[[], float], memory_kib: int,
                 set_irq: Callable[[bool], None] = lambda level: None):
        self._clock = clock
        self._set_irq = set_irq
        self.ticks = 0  # time-base pulses since power-on
        self.index = 0
        self.nmi_disabled = False
        self.offset = 0.0  # seconds the guest moved its clock by
        self.nvram = bytearray(NVRAM_SIZE)
        self.nvram[REG_A], self.nvram[REG_B], self.nvram[REG_D] = A_RESET, B_RESET, D_VRT
        _set_memory_sizes(self.nvram, memory_kib)

    # -- the ports ---------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if offset == 0:
            return 0xFF  # the index port is write-only
        return self._read_register(self.index)

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        if offset == 0:
            self.index = value & ~NMI_DISABLE
            self.nmi_disabled = bool(value & NMI_DISABLE)
        else:
            self._write_register(self.index, value)

    # -- registers ---------------------------------------------------------------
    def _read_register(self, index: int) -> int:
        if index in TIME_REGISTERS and not self.nvram[REG_B] & B_SET:
            self._latch_time()
        if index == REG_C:
            return self._read_flags()
        return self.nvram[index]

    def _read_flags(self) -> int:
        """Register C: reading clears every flag and lowers IRQ 8 (datasheet,
        "Register C")."""
        flags, self.nvram[REG_C] = self.nvram[REG_C], 0
        self._set_irq(False)
        return flags

    # -- interrupts on virtual time ----------------------------------------------
    def advance(self, ticks: int) -> None:
        """TICKS pulses of the time base: the seconds and periods that ended."""
        before, self.ticks = self.ticks, self.ticks + ticks
        flags = 0
        if self.ticks // RTC_HZ > before // RTC_HZ and not self.nvram[REG_B] & B_SET:
            flags |= C_UF | (C_AF if self._alarm_matches() else 0)
        period = self._period()
        if period and self.ticks // period > before // period:
            flags |= C_PF
        self._set_flags(flags)

    def ticks_to_next_irq(self) -> int | None:
        enables = self.nvram[REG_B]
        waits = []
        if self._period():
            waits.append(self._period() - self.ticks % self._period())
        if enables & (B_UIE | B_AIE) and not enables & B_SET:
            waits.append(RTC_HZ - self.ticks % RTC_HZ)
        return min(waits, default=None)

    def _period(self) -> int:
        """Time-base pulses per periodic interrupt; 0 while PIE is clear."""
        if not self.nvram[REG_B] & B_PIE:
            return 0
        rate = _periodic_hz(self.nvram[REG_A] & A_RATE)
        return RTC_HZ // rate if rate else 0

    def _alarm_matches(self) -> bool:
        self._latch_time()
        return all(self.nvram[alarm] & ALARM_DONT_CARE == ALARM_DONT_CARE
                   or self.nvram[alarm] == self.nvram[now]
                   for alarm, now in ((SECONDS_ALARM, SECONDS), (MINUTES_ALARM, MINUTES),
                                      (HOURS_ALARM, HOURS)))

    def _set_flags(self, flags: int) -> None:
        """FLAGS are set in C; one newly set and enabled in B raises IRQ 8."""
        fresh = flags & ~self.nvram[REG_C]
        self.nvram[REG_C] |= flags
        if fresh & self.nvram[REG_B] & B_INTERRUPT_ENABLES:
            self.nvram[REG_C] |= C_IRQF
            self._set_irq(True)

    def _recompute_irqf(self) -> None:
        """After a write to B: IRQF (and the line) follow the flags already set
        (QEMU's cmos_ioport_write)."""
        if self.nvram[REG_C] & self.nvram[REG_B] & B_INTERRUPT_ENABLES:
            self.nvram[REG_C] |= C_IRQF
            self._set_irq(True)
        else:
            self.nvram[REG_C] &= ~C_IRQF
            self._set_irq(False)

    def _write_register(self, index: int, value: int) -> None:
        """A keeps UIP read-only; C and D are read-only. Setting B's SET freezes the
        clock registers (and clears UIE); while it is clear, writing a clock register
        sets the clock, and clearing it sets the clock from the frozen registers
        (datasheet, "Register B")."""
        if index in (REG_C, REG_D):
            return
        running = not self.nvram[REG_B] & B_SET
        if index == REG_A:
            value &= ~A_UIP
        if index == REG_B and value & B_SET:
            value &= ~B_UIE
        if running and (index in TIME_REGISTERS or index == REG_B):
            self._latch_time()  # the registers the write does not touch keep the time
        self.nvram[index] = value
        if index == REG_B:
            self._recompute_irqf()
        released = not running and index == REG_B and not value & B_SET
        if released or (running and index in TIME_REGISTERS):
            self._set_clock()

    def _now(self) -> float:
        return self._clock() + self.offset

    def _latch_time(self) -> None:
        """Copy the current time into the clock registers, in B's format."""
        now = time.gmtime(int(self._now() // 1))
        values = {SECONDS: now.tm_sec, MINUTES: now.tm_min, DAY: now.tm_mday,
                  MONTH: now.tm_mon, YEAR: now.tm_year % 100, CENTURY: now.tm_year // 100,
                  WEEKDAY: (now.tm_wday + 1) % 7 + 1}  # 1 is Sunday
        for index, value in values.items():
            self.nvram[index] = self._encode(value)
        self.nvram[HOURS] = self._encode_hour(now.tm_hour)

    def _set_clock(self) -> None:
        """The guest wrote the time: keep the offset that makes clock() show it."""
        fields = [self._decode(self.nvram[i]) for i in (YEAR, MONTH, DAY, MINUTES, SECONDS)]
        year, month, day, minute, second = fields
        year += 100 * self._decode(self.nvram[CENTURY])
        hour = self._decode_hour(self.nvram[HOURS])
        try:
            wanted = calendar.timegm((year, month, day, hour, minute, second))
        except (ValueError, OverflowError):
            return  # not a date (a half-written one): keep the old offset
        self.offset = wanted - int(self._clock() // 1)

    # -- formats -----------------------------------------------------------------
    def _binary(self) -> bool:
        return bool(self.nvram[REG_B] & B_DM_BINARY)

    def _encode(self, value: int) -> int:
        return value if self._binary() else (value // 10) << 4 | value % 10

    def _decode(self, value: int) -> int:
        return value if self._binary() else (value >> 4) * 10 + (value & 0xF)

    def _encode_hour(self, hour: int) -> int:
        """12-hour mode: 12, 1, ..., 11 with bit 7 set in the afternoon."""
        if self.nvram[REG_B] & B_24_HOUR:
            return self._encode(hour)
        return self._encode((hour + 11) % 12 + 1) | (HOUR_PM if hour >= 12 else 0)

    def _decode_hour(self, value: int) -> int:
        if self.nvram[REG_B] & B_24_HOUR:
            return self._decode(value)
        return self._decode(value & ~HOUR_PM) % 12 + (12 if value & HOUR_PM else 0)


def _periodic_hz(rate_select: int) -> int:
    """Register A's RS bits with the 32.768 kHz time base (datasheet, "Periodic
    interrupt rate" table): 0 is off, 1 and 2 are 256 and 128 Hz, then 65536 >> RS."""
    if rate_select == 0:
        return 0
    return {1: 256, 2: 128}.get(rate_select, 65536 >> rate_select)


def _set_memory_sizes(nvram: bytearray, memory_kib: int) -> None:
    """Base memory (640 KiB), extended memory above 1 MiB in KiB (twice, capped at
    65535) and memory above 16 MiB in 64 KiB blocks, as QEMU's pc.c stores them (and,
    like QEMU, no AT checksum at 0x2E-0x2F)."""
    extended = min(max(memory_kib - 1024, 0), 0xFFFF)
    above_16m = min(max(memory_kib - 16 * 1024, 0) // 64, 0xFFFF)
    for index, value in ((BASE_MEMORY_LOW, BASE_MEMORY_KIB), (EXTENDED_LOW, extended),
                         (EXTENDED_LOW_COPY, extended), (ABOVE_16M_LOW, above_16m)):
        nvram[index:index + 2] = value.to_bytes(2, "little")
