"""The CMOS RTC and NVRAM through ports 0x70-0x71, against the MC146818A datasheet and
the PC's NVRAM layout."""

import calendar

import pytest

from pvtool.machine.cmos import RTC_HZ, Cmos
from pvtool.machine.ports import PortBus
from tests.machine.test_ata import qemu_records, script_run

INDEX, DATA = 0, 1
SECONDS, MINUTES, HOURS, WEEKDAY, DAY, MONTH, YEAR = 0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09
REG_A, REG_B, REG_C, REG_D, CENTURY = 0x0A, 0x0B, 0x0C, 0x0D, 0x32
LEAP_DAY = calendar.timegm((2024, 2, 29, 13, 45, 56))  # a Thursday afternoon


class Clock:
    """A virtual clock the test moves by hand."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def read(cmos: Cmos, index: int) -> int:
    cmos.write(INDEX, 1, index)
    return cmos.read(DATA, 1)


def write(cmos: Cmos, index: int, value: int) -> None:
    cmos.write(INDEX, 1, index)
    cmos.write(DATA, 1, value)


def clock_registers(cmos: Cmos) -> list[int]:
    return [read(cmos, i) for i in (SECONDS, MINUTES, HOURS, WEEKDAY, DAY, MONTH, YEAR,
                                    CENTURY)]


@pytest.fixture
def clock() -> Clock:
    return Clock(LEAP_DAY + 0.25)


@pytest.fixture
def cmos(clock) -> Cmos:
    return Cmos(clock, memory_kib=128 * 1024)


# ---- the clock --------------------------------------------------------------------------

def test_clock_reads_in_bcd_24_hour_by_default(cmos):
    assert read(cmos, REG_B) == 0x02
    assert clock_registers(cmos) == [0x56, 0x45, 0x13, 5, 0x29, 0x02, 0x24, 0x20]


def test_binary_mode(cmos):
    write(cmos, REG_B, 0x06)
    assert clock_registers(cmos) == [56, 45, 13, 5, 29, 2, 24, 20]


@pytest.mark.parametrize("hour, bcd, binary", [
    (13, 0x81, 0x81), (0, 0x12, 12), (12, 0x92, 0x8C), (11, 0x11, 11), (23, 0x91, 0x8B),
])
def test_12_hour_mode_marks_the_afternoon_with_bit_7(clock, cmos, hour, bcd, binary):
    clock.now = calendar.timegm((2024, 2, 29, hour, 0, 0))
    write(cmos, REG_B, 0x00)
    assert read(cmos, HOURS) == bcd
    write(cmos, REG_B, 0x04)
    assert read(cmos, HOURS) == binary


def test_clock_follows_the_virtual_clock(clock, cmos):
    clock.now += 3600 * 11 + 5  # past midnight: 2024-03-01 00:46:01
    assert clock_registers(cmos) == [0x01, 0x46, 0x00, 6, 0x01, 0x03, 0x24, 0x20]


def test_day_of_week_counts_sunday_as_1(clock, cmos):
    clock.now = calendar.timegm((2024, 3, 3, 12, 0, 0))
    assert read(cmos, WEEKDAY) == 1


def test_set_bit_freezes_the_registers_and_setting_the_time_moves_the_clock(clock, cmos):
    write(cmos, REG_B, 0x82)
    clock.now += 30
    assert read(cmos, SECONDS) == 0x56  # frozen
    for index, value in ((SECONDS, 0x00), (MINUTES, 0x30), (HOURS, 0x08), (DAY, 0x15),
                         (MONTH, 0x06), (YEAR, 0x99), (CENTURY, 0x19)):
        write(cmos, index, value)
    write(cmos, REG_B, 0x02)
    clock.now += 61
    assert clock_registers(cmos)[:3] == [0x01, 0x31, 0x08]
    assert clock_registers(cmos)[4:] == [0x15, 0x06, 0x99, 0x19]


def test_writing_one_register_while_running_shifts_the_clock(clock, cmos):
    write(cmos, MINUTES, 0x10)
    assert clock_registers(cmos)[:3] == [0x56, 0x10, 0x13]
    clock.now += 10
    assert read(cmos, SECONDS) == 0x06 and read(cmos, MINUTES) == 0x11


# ---- status registers -------------------------------------------------------------------

def test_register_a_never_shows_an_update_in_progress(cmos):
    assert read(cmos, REG_A) == 0x26
    write(cmos, REG_A, 0xAF)
    assert read(cmos, REG_A) == 0x2F


def test_register_d_says_the_battery_is_good(cmos):
    write(cmos, REG_D, 0x00)
    assert read(cmos, REG_D) == 0x80


def test_register_c_reports_a_second_ended_once(cmos):
    write(cmos, REG_A, 0x20)  # no periodic rate: PF stays out of the way
    read(cmos, REG_C)
    cmos.advance(RTC_HZ // 2)
    assert read(cmos, REG_C) & 0x10 == 0
    cmos.advance(RTC_HZ // 2)  # a second boundary passed
    assert read(cmos, REG_C) == 0x10
    assert read(cmos, REG_C) == 0  # reading cleared it


def test_periodic_flag_needs_pie_as_on_qemu(cmos):
    """QEMU runs the periodic timer only while PIE is set (pcprobe: "pf 0")."""
    read(cmos, REG_C)
    cmos.advance(RTC_HZ // 100)  # ten periods of the BIOS's 1024 Hz rate
    assert read(cmos, REG_C) == 0


def test_register_c_periodic_flag_and_irqf(cmos):
    write(cmos, REG_A, 0x2F)  # 2 Hz
    write(cmos, REG_B, 0x42)  # PIE
    read(cmos, REG_C)
    cmos.advance(RTC_HZ // 5)
    assert read(cmos, REG_C) == 0
    cmos.advance(RTC_HZ // 2 - RTC_HZ // 5)  # a half-second boundary
    assert read(cmos, REG_C) == 0xC0  # PF, and IRQF since PIE is set


# ---- interrupts on IRQ 8 ------------------------------------------------------------

@pytest.fixture
def wired(clock):
    """A CMOS with its IRQ 8 line recorded: a list of the levels driven."""
    levels: list[bool] = []
    return Cmos(clock, memory_kib=128 * 1024, set_irq=levels.append), levels


@pytest.mark.parametrize("rate, hz", [(0x3, 8192), (0x6, 1024), (0xF, 2), (0x1, 256),
                                      (0x2, 128)])
def test_periodic_interrupts_come_at_register_a_rate(wired, rate, hz):
    cmos, levels = wired
    write(cmos, REG_A, 0x20 | rate)
    write(cmos, REG_B, 0x42)
    levels.clear()
    assert cmos.ticks_to_next_irq() == RTC_HZ // hz
    cmos.advance(RTC_HZ // hz - 1)
    assert levels == []
    cmos.advance(1)
    assert levels == [True]
    assert read(cmos, REG_C) == 0xC0
    assert levels == [True, False]  # reading C lowers the line


def test_update_ended_interrupt_once_a_second(wired):
    cmos, levels = wired
    write(cmos, REG_B, 0x12)  # UIE
    levels.clear()
    assert cmos.ticks_to_next_irq() == RTC_HZ
    cmos.advance(RTC_HZ)
    assert levels == [True]
    assert read(cmos, REG_C) == 0x90


def test_alarm_with_dont_care_bytes_fires_every_second(wired):
    cmos, levels = wired
    for alarm in (0x01, 0x03, 0x05):
        write(cmos, alarm, 0xC0)
    write(cmos, REG_B, 0x22)  # AIE
    levels.clear()
    cmos.advance(RTC_HZ)
    assert levels == [True]
    assert read(cmos, REG_C) == 0xB0  # IRQF, AF and UF


def test_alarm_that_does_not_match_sets_no_af(wired):
    cmos, levels = wired
    write(cmos, 0x01, 0x59)
    write(cmos, 0x03, 0x59)
    write(cmos, 0x05, 0x23)
    write(cmos, REG_B, 0x22)
    cmos.advance(RTC_HZ)
    assert read(cmos, REG_C) == 0x10  # UF only, no interrupt
    assert True not in levels


def test_enabling_an_interrupt_whose_flag_is_set_raises_irqf_at_once(wired):
    cmos, levels = wired
    cmos.advance(RTC_HZ)  # UF set, UIE clear: nothing raised
    assert True not in levels
    write(cmos, REG_B, 0x12)
    assert levels[-1] is True
    write(cmos, REG_B, 0x02)
    assert levels[-1] is False
    assert read(cmos, REG_C) == 0x10


def test_index_bit_7_is_the_nmi_mask(cmos):
    cmos.write(INDEX, 1, 0x80 | REG_D)
    assert cmos.nmi_disabled and cmos.read(DATA, 1) == 0x80
    cmos.write(INDEX, 1, REG_D)
    assert not cmos.nmi_disabled


# ---- NVRAM ------------------------------------------------------------------------------

def nvram_word(cmos: Cmos, low: int) -> int:
    return read(cmos, low) | read(cmos, low + 1) << 8


def test_base_memory_is_640_kib(cmos):
    assert nvram_word(cmos, 0x15) == 640


@pytest.mark.parametrize("memory_kib, extended, above_16m", [
    (128 * 1024, 0xFFFF, (128 - 16) * 16),  # 127 MiB above 1 MiB does not fit in 16 bits
    (32 * 1024, 31 * 1024, 16 * 16),
    (640, 0, 0),
])
def test_extended_memory_sizes(clock, memory_kib, extended, above_16m):
    cmos = Cmos(clock, memory_kib)
    assert nvram_word(cmos, 0x17) == extended and nvram_word(cmos, 0x30) == extended
    assert nvram_word(cmos, 0x34) == above_16m


def test_other_bytes_are_plain_nvram(cmos):
    for index in (0x0E, 0x3F, 0x40, 0x7F):
        write(cmos, index, 0xA5 ^ index)
        assert read(cmos, index) == 0xA5 ^ index


# ---- QEMU as the oracle -----------------------------------------------------------------

def register_script(*indices: int) -> list[tuple]:
    return [op for i in indices for op in (("out", 0x70, i), ("in", 0x71))]


def set_b(value: int) -> list[tuple]:
    return [("out", 0x70, REG_B), ("out", 0x71, value)]


def test_qemu_shows_the_same_clock_and_memory_sizes(build):
    """QEMU's RTC started at LEAP_DAY (`-rtc base=`) and its default 128 MiB. Minutes
    and seconds move while QEMU boots, UIP comes and goes in real time: they are left
    out. Bytes QEMU's firmware tables fill (floppy, equipment, boot order) are not
    this device's."""
    date = (HOURS, WEEKDAY, DAY, MONTH, YEAR, CENTURY)
    script = [
        *register_script(*date), *set_b(0x06), *register_script(*date),
        *set_b(0x00), *register_script(HOURS), *set_b(0x04), *register_script(HOURS),
        *set_b(0x02), ("out", 0x70, REG_A), ("in", 0x71, 0x7F),
        *register_script(REG_B, REG_D, 0x15, 0x16, 0x17, 0x18, 0x30, 0x31, 0x34, 0x35),
    ]
    judge = qemu_records(build, script, "-m", "128", "-rtc", "base=2024-02-29T13:45:56")
    bus = PortBus()
    bus.register(Cmos(Clock(LEAP_DAY), 128 * 1024), 0x70, 2)
    assert script_run(bus, script) == judge
