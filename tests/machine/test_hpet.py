"""The HPET (machine/hpet.py) against the IA-PC HPET specification's registers and the
values pcprobe measured on QEMU 7.2 (tests/e2e/test_pcprobe.py compares the whole)."""

import pytest

from pvtool.machine.hpet import HPET_HZ, Hpet

CAP, PERIOD, CONFIG, STATUS, COUNTER = 0x000, 0x004, 0x010, 0x020, 0x0F0
T0, T1, T2 = 0x100, 0x120, 0x140
CMP = 0x08


@pytest.fixture
def wired():
    lines: list[tuple[int, bool]] = []
    return Hpet(lambda line, level: lines.append((line, level))), lines


def test_capabilities_are_qemus(wired):
    hpet, _ = wired
    assert hpet.read(CAP, 4) == 0x8086A201  # vendor, legacy route, 64-bit, 3 timers, rev 1
    assert hpet.read(PERIOD, 4) == 10_000_000  # femtoseconds: 10 ns
    assert HPET_HZ * hpet.read(PERIOD, 4) == 10**15
    assert [hpet.read(t, 4) for t in (T0, T1, T2)] == [0x30] * 3
    assert hpet.read(T0 + 4, 4) == 0x4  # IRQ 2 only
    assert hpet.read(0x160, 4) == 0  # no fourth timer


def test_counter_runs_only_when_enabled_and_is_writable_when_halted(wired):
    hpet, _ = wired
    hpet.write(COUNTER, 4, 0x1000)
    hpet.write(COUNTER + 4, 4, 1)
    hpet.advance(500)
    assert hpet.read(COUNTER, 8) == 0x1_0000_1000
    hpet.write(CONFIG, 4, 1)
    hpet.advance(500)
    assert hpet.read(COUNTER, 4) == 0x1000 + 500


def test_config_and_timer_write_masks(wired):
    hpet, _ = wired
    hpet.write(CONFIG, 4, 0xFFFFFFFF)
    assert hpet.read(CONFIG, 4) == 3
    hpet.write(CONFIG, 4, 0)
    hpet.write(T0, 4, 0xFFFFFFFF)
    hpet.write(T0 + 4, 4, 0xFFFFFFFF)
    assert (hpet.read(T0, 4), hpet.read(T0 + 4, 4)) == (0x7F7E, 0x4)


def test_32_bit_mode_truncates_the_comparator_and_ignores_its_high_half(wired):
    hpet, _ = wired
    hpet.write(T1, 4, 0x108)  # 32-bit, periodic
    hpet.write(T1 + CMP + 4, 4, 0x55)
    assert (hpet.read(T1 + CMP, 4), hpet.read(T1 + CMP + 4, 4)) == (0xFFFFFFFF, 0)


def test_legacy_one_shot_timer_0_pulses_irq_0_once(wired):
    hpet, lines = wired
    hpet.write(CONFIG, 4, 2)  # legacy replacement
    hpet.write(T0, 4, 0x4)  # interrupt enabled, edge, one-shot
    hpet.write(T0 + CMP, 4, 1000)
    hpet.write(T0 + CMP + 4, 4, 0)
    hpet.write(CONFIG, 4, 3)
    assert hpet.legacy_replacement
    assert hpet.ticks_to_next_irq() == 1000
    hpet.advance(999)
    assert lines == []
    hpet.advance(1)
    assert lines == [(0, True), (0, False)]
    hpet.advance(10**9)
    assert len(lines) == 2  # one-shot
    assert hpet.read(STATUS, 4) == 0  # edge-triggered: no status bit


def test_periodic_timer_1_reaches_irq_8_every_period(wired):
    hpet, lines = wired
    hpet.write(CONFIG, 4, 2)
    hpet.write(T1, 4, 0x14C)  # enabled, periodic, VAL_SET, 32-bit
    hpet.write(T1 + CMP, 4, 300)  # first comparator
    hpet.write(T1 + CMP, 4, 200)  # then the period
    hpet.write(CONFIG, 4, 3)
    for _ in range(3):
        hpet.advance(hpet.ticks_to_next_irq())
    assert lines == [(8, True), (8, False)] * 3
    assert hpet.read(T1 + CMP, 4) == 300 + 3 * 200


def test_level_triggered_timer_holds_its_line_until_status_is_written(wired):
    hpet, lines = wired
    hpet.write(T2, 4, 0x6 | 2 << 9)  # level, enabled, routed to line 2
    hpet.write(T2 + CMP, 4, 10)
    hpet.write(CONFIG, 4, 1)
    hpet.advance(10)
    assert lines == [(2, True)] and hpet.read(STATUS, 4) == 4
    hpet.write(STATUS, 4, 4)
    assert lines[-1] == (2, False) and hpet.read(STATUS, 4) == 0


def test_a_comparator_behind_the_counter_fires_at_once(wired):
    hpet, lines = wired
    hpet.write(CONFIG, 4, 1)
    hpet.advance(5000)
    hpet.write(T0, 4, 0x4)
    hpet.write(T0 + CMP, 4, 100)
    hpet.write(T0 + CMP + 4, 4, 0)
    assert lines[:2] == [(0, True), (0, False)]


def test_polling_a_standing_counter_ends_the_slice():
    ended = []
    hpet = Hpet(lambda line, level: None, lambda: ended.append(True))
    hpet.write(CONFIG, 4, 1)
    hpet.read(COUNTER, 4)
    assert ended == []
    hpet.read(COUNTER, 4)
    assert ended == [True]
    hpet.advance(1)
    hpet.read(COUNTER, 4)
    assert ended == [True]


def test_legacy_replacement_holds_off_the_pit_and_the_rtc_on_the_pc():
    from pvtool.machine.pc import Machine

    machine = Machine(ram_size=16 << 20, output=lambda data: None)
    lines: list[tuple[int, bool]] = []
    machine.irqs.set_line = lambda line, level: lines.append((line, level))
    machine.pit.write(3, 1, 0x34)  # channel 0, rate generator, count 100
    machine.pit.write(0, 1, 100)
    machine.pit.write(0, 1, 0)
    machine.cmos.write(0, 1, 0x0B)
    machine.cmos.write(1, 1, 0x42)  # PIE at 1024 Hz
    machine.hpet.write(CONFIG, 4, 2)
    machine.advance(10**6)
    assert [line for line, level in lines if level] == []
    machine.hpet.write(CONFIG, 4, 0)
    machine.cmos.write(0, 1, 0x0C)
    machine.cmos.read(1, 1)  # the flags set meanwhile cleared: the next ones raise IRQ 8
    machine.advance(10**6)
    assert (0, True) in lines and (8, True) in lines


def test_reading_the_high_half_after_the_low_does_not_end_the_slice():
    ended = []
    hpet = Hpet(lambda line, level: None, lambda: ended.append(True))
    hpet.write(CONFIG, 4, 1)
    hpet.advance(7)
    assert (hpet.read(COUNTER, 4), hpet.read(COUNTER + 4, 4)) == (7, 0)
    assert hpet.read(COUNTER, 8) == 7
    assert ended == [True]  # the 64-bit read was the second of the same value
