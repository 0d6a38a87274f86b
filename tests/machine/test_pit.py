"""The 8254 on virtual time, programmed through its ports as kernels program it,
against the Intel 8254 datasheet ("Mode Definitions", "Read Operations")."""

import pytest

from pvtool.machine.pit import PIT_HZ, Pit8254

CH0, CH1, CH2, CONTROL = 0, 1, 2, 3
HZ_100 = (PIT_HZ + 50) // 100  # 11932, as Linux's LATCH and minikern's timerinit


class Timer:
    def __init__(self):
        self.irqs = 0
        self.pit = Pit8254(self._irq)

    def _irq(self) -> None:
        self.irqs += 1

    def outb(self, offset: int, value: int) -> None:
        self.pit.write(offset, 1, value)

    def inb(self, offset: int) -> int:
        return self.pit.read(offset, 1)

    def program(self, channel: int, mode: int, count: int, access: int = 3,
                bcd: bool = False) -> None:
        self.outb(CONTROL, channel << 6 | access << 4 | mode << 1 | int(bcd))
        if access in (1, 3):
            self.outb(channel, count & 0xFF)
        if access in (2, 3):
            self.outb(channel, count >> 8)

    def latched(self, channel: int, command: int | None = None) -> int:
        self.outb(CONTROL, channel << 6 if command is None else command)
        return self.inb(channel) | self.inb(channel) << 8


@pytest.fixture
def timer() -> Timer:
    return Timer()


# ---- channel 0 and IRQ0 -----------------------------------------------------------------

def test_unprogrammed_timer_never_interrupts(timer):
    assert timer.pit.ticks_to_next_irq() is None
    timer.pit.advance(10 * PIT_HZ)
    assert timer.irqs == 0


def test_rate_generator_at_100_hz_fires_once_per_period(timer):
    timer.program(CH0, 2, HZ_100)  # 0x34, as Linux and minikern write it
    assert timer.pit.ticks_to_next_irq() == 11932
    timer.pit.advance(11931)
    assert timer.irqs == 0 and timer.pit.ticks_to_next_irq() == 1
    timer.pit.advance(1)
    assert timer.irqs == 1 and timer.pit.ticks_to_next_irq() == 11932
    timer.pit.advance(11932)
    assert timer.irqs == 2


def test_one_advance_over_many_periods_fires_once(timer):
    timer.program(CH0, 2, HZ_100)
    timer.pit.advance(10 * HZ_100 + 5)
    assert timer.irqs == 1
    assert timer.pit.irq0_edges == 10 and timer.pit.irq0_coalesced == 9
    assert timer.pit.ticks_to_next_irq() == HZ_100 - 5


def test_square_wave_fires_once_per_period(timer):
    timer.program(CH0, 3, 1000)
    timer.pit.advance(999)
    assert timer.irqs == 0
    timer.pit.advance(1)
    assert timer.irqs == 1 and timer.pit.ticks_to_next_irq() == 1000


def test_square_wave_counts_down_by_two_and_output_is_half_high(timer):
    timer.program(CH0, 3, 1000)
    timer.pit.advance(100)
    assert timer.latched(CH0) == 800
    assert timer.pit.out(0)
    timer.pit.advance(400)
    assert not timer.pit.out(0)  # second half of the period
    assert timer.latched(CH0) == 1000


def test_interrupt_on_terminal_count_fires_once(timer):
    timer.program(CH0, 0, 500)
    assert not timer.pit.out(0)
    assert timer.pit.ticks_to_next_irq() == 500
    timer.pit.advance(500)
    assert timer.irqs == 1 and timer.pit.out(0)
    assert timer.pit.ticks_to_next_irq() is None
    timer.pit.advance(70000)
    assert timer.irqs == 1


def test_mode_0_counter_wraps_after_terminal_count(timer):
    timer.program(CH0, 0, 10)
    timer.pit.advance(12)
    assert timer.latched(CH0) == 0xFFFE


def test_rewriting_the_count_restarts_mode_0(timer):
    timer.program(CH0, 0, 500)
    timer.pit.advance(400)
    timer.outb(CH0, 0xE8)  # first byte: counting stops, OUT stays low
    timer.pit.advance(1000)
    assert timer.irqs == 0 and timer.pit.ticks_to_next_irq() is None
    timer.outb(CH0, 0x03)  # 1000
    assert timer.pit.ticks_to_next_irq() == 1000


def test_control_word_stops_the_counter_until_a_count_is_written(timer):
    timer.program(CH0, 2, HZ_100)
    timer.outb(CONTROL, 0x34)
    assert timer.pit.ticks_to_next_irq() is None
    timer.outb(CH0, 0x10)
    timer.outb(CH0, 0x00)
    assert timer.pit.ticks_to_next_irq() == 16


def test_count_zero_means_65536(timer):
    timer.program(CH0, 2, 0)
    assert timer.pit.ticks_to_next_irq() == 0x10000
    timer.pit.advance(1)
    assert timer.latched(CH0) == 0xFFFF


def test_strobe_mode_4_rises_one_tick_after_terminal_count(timer):
    timer.program(CH0, 4, 100)
    assert timer.pit.ticks_to_next_irq() == 101
    timer.pit.advance(100)
    assert timer.irqs == 0 and not timer.pit.out(0)
    timer.pit.advance(1)
    assert timer.irqs == 1 and timer.pit.ticks_to_next_irq() is None


# ---- reading the counters ---------------------------------------------------------------

def test_latch_command_freezes_the_count_until_read(timer):
    timer.program(CH0, 2, HZ_100)
    timer.pit.advance(100)
    timer.outb(CONTROL, 0x00)
    timer.pit.advance(1000)
    assert timer.inb(CH0) | timer.inb(CH0) << 8 == HZ_100 - 100
    assert timer.latched(CH0) == HZ_100 - 1100


def test_second_latch_before_reading_is_ignored(timer):
    timer.program(CH0, 2, HZ_100)
    timer.outb(CONTROL, 0x00)
    timer.pit.advance(50)
    timer.outb(CONTROL, 0x00)
    assert timer.inb(CH0) | timer.inb(CH0) << 8 == HZ_100


def test_live_reads_alternate_low_and_high_byte(timer):
    timer.program(CH0, 2, 0x1234)
    timer.pit.advance(0x34)
    assert timer.inb(CH0) == 0x00
    assert timer.inb(CH0) == 0x12


def test_rate_generator_reloads_after_reaching_one(timer):
    timer.program(CH0, 2, 100)
    timer.pit.advance(99)
    assert timer.latched(CH0) == 1
    assert not timer.pit.out(0)  # OUT low for the last tick of the period
    timer.pit.advance(1)
    assert timer.latched(CH0) == 100 and timer.pit.out(0)


def test_low_byte_only_access(timer):
    timer.program(CH1, 2, 0x40, access=1)
    timer.pit.advance(0x10)
    assert timer.inb(CH1) == 0x30
    assert timer.inb(CH1) == 0x30  # every read is a low byte


def test_high_byte_only_access(timer):
    timer.program(CH1, 0, 0x2000, access=2)
    timer.pit.advance(0x100)
    assert timer.inb(CH1) == 0x1F


def test_read_back_latches_status_then_count(timer):
    timer.program(CH2, 0, 1000)
    timer.pit.advance(10)
    timer.outb(CONTROL, 0xC8)  # read-back: count and status, counter 2
    status = timer.inb(CH2)
    assert status == 0x30  # OUT low, count loaded, LSB then MSB, mode 0, binary
    assert timer.inb(CH2) | timer.inb(CH2) << 8 == 990


def test_read_back_status_only_shows_null_count_after_control_word(timer):
    timer.outb(CONTROL, 0x74)  # counter 1, LSB then MSB, mode 2
    timer.outb(CONTROL, 0xE4)  # read-back: status only, counter 1
    assert timer.inb(CH1) == 0xC0 | 0x34  # OUT high, null count
    timer.outb(CH1, 0x10)
    timer.outb(CONTROL, 0xE4)
    assert timer.inb(CH1) & 0x40  # only half the count written: still null
    timer.outb(CH1, 0x00)
    timer.outb(CONTROL, 0xE4)
    assert timer.inb(CH1) == 0x80 | 0x34


def test_read_back_can_latch_several_counters(timer):
    timer.program(CH0, 2, 1000)
    timer.program(CH2, 2, 3000)
    timer.pit.advance(10)
    timer.outb(CONTROL, 0xDA)  # count only, counters 0 and 2
    timer.pit.advance(10)
    assert timer.inb(CH0) | timer.inb(CH0) << 8 == 990
    assert timer.inb(CH2) | timer.inb(CH2) << 8 == 2990


def test_bcd_counting(timer):
    timer.program(CH2, 0, 0x1000, bcd=True)  # 1000 decimal
    timer.pit.advance(1)
    assert timer.latched(CH2) == 0x0999


def test_control_port_reads_zero(timer):
    assert timer.inb(CONTROL) == 0


# ---- channels 1 and 2 -------------------------------------------------------------------

def test_other_channels_count_without_touching_irq0(timer):
    timer.program(CH2, 3, 100)
    timer.program(CH1, 2, 18)
    timer.pit.advance(1000)
    assert timer.irqs == 0
    assert timer.latched(CH1) == 18 - 1000 % 18


def test_low_gate_pauses_mode_0(timer):
    timer.program(CH2, 0, 1000)
    timer.pit.advance(100)
    timer.pit.set_gate(2, False)
    timer.pit.advance(500)
    assert timer.latched(CH2) == 900
    timer.pit.set_gate(2, True)
    timer.pit.advance(900)
    assert timer.pit.out(2)


def test_gate_edge_triggers_one_shot_mode_1(timer):
    timer.program(CH2, 1, 50)
    timer.pit.advance(100)
    assert timer.pit.out(2)  # not triggered yet
    timer.pit.set_gate(2, False)
    timer.pit.set_gate(2, True)
    assert not timer.pit.out(2)
    timer.pit.advance(50)
    assert timer.pit.out(2)


def test_time_never_runs_backwards(timer):
    with pytest.raises(ValueError):
        timer.pit.advance(-1)
