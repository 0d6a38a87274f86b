"""The 8254 on virtual time, programmed through its ports as kernels program it, as
QEMU 7.2 presents it. Where QEMU departs from the Intel 8254 datasheet, the test says
which line of guests/pitprobe shows QEMU's answer (tests/e2e/test_pitprobe.py runs the
probe on QEMU and on pvtool and compares every byte)."""

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


def status(timer: Timer, channel: int) -> int:
    timer.outb(CONTROL, 0xE0 | 2 << channel)  # read-back: status only
    return timer.inb(channel)


# ---- power-on -----------------------------------------------------------------------------

def test_power_on_state_is_qemus_reset_with_seabios_channel_0(timer):
    # pitprobe "entry: status 34 6 6, gate2 0": SeaBIOS's mode 2 with word access on
    # channel 0; channels 1 and 2 in mode 3 with no access mode, as QEMU resets them.
    assert [status(timer, channel) & 0x7F for channel in (CH0, CH1, CH2)] == [0x34, 6, 6]
    assert not timer.pit.channels[CH2].gate
    assert timer.pit.channels[CH1].gate and timer.pit.channels[CH0].gate


def test_before_a_control_word_bytes_are_low_bytes_and_latches_are_ignored(timer):
    timer.pit.advance(10)  # mode 3 counts 65536 down by two a tick: 0xFFEC
    timer.outb(CONTROL, CH1 << 6)  # latch: QEMU's rw_mode 0 latches nothing
    timer.pit.advance(10)
    assert timer.inb(CH1) == timer.inb(CH1) == 0xD8  # live low bytes
    timer.outb(CH1, 0x80)  # a one-byte count
    assert timer.pit.channels[CH1].count == 0x80


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


def test_square_wave_rises_at_the_load_then_once_per_period(timer):
    # QEMU's pit_load_count drives IRQ0 to OUT0 at once, and mode 3's OUT is high from
    # the load (pitprobe "ch0 mode 3: out 1, fell 1, rose 1, even 1"); SeaBIOS's mode 2
    # left the line low.
    timer.program(CH0, 3, 1000)
    assert timer.irqs == 1
    timer.pit.advance(999)
    assert timer.irqs == 1
    timer.pit.advance(1)
    assert timer.irqs == 2 and timer.pit.ticks_to_next_irq() == 1000


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


def test_first_byte_of_a_new_count_leaves_mode_0_counting(timer):
    # pitprobe "ch0 mode 0 half-written: out 1, then 0" (the datasheet stops the count)
    timer.program(CH0, 0, 500)
    timer.pit.advance(400)
    timer.outb(CH0, 0xE8)
    assert timer.pit.ticks_to_next_irq() == 100
    timer.pit.advance(100)
    assert timer.irqs == 1 and timer.pit.out(0)
    timer.outb(CH0, 0x03)  # 1000: loaded at once, OUT low again
    assert not timer.pit.out(0) and timer.pit.ticks_to_next_irq() == 1000


def test_control_word_leaves_the_count_and_out_running(timer):
    # pitprobe "ch0 mode 0: ... after control word 1" (the datasheet sets OUT low and
    # stops the count until a count is written)
    timer.program(CH0, 0, 100)
    timer.pit.advance(150)
    timer.outb(CONTROL, 0x30)
    assert timer.pit.out(0) and timer.latched(CH0) == (100 - 150) & 0xFFFF
    timer.outb(CONTROL, 0x34)  # mode 2 on the same load: 150 ticks into periods of 100
    assert timer.latched(CH0) == 50 and timer.pit.ticks_to_next_irq() == 50
    assert timer.irqs == 1


def test_a_load_that_raises_out0_raises_irq0(timer):
    # QEMU's pit_load_count sets IRQ0 to OUT0 at once: mode 1's OUT is high from the load
    # (pitprobe "ch0 mode 1: status mode 1, out 1, ...").
    timer.program(CH0, 1, 100)
    assert timer.irqs == 1 and timer.pit.out(0)
    assert timer.pit.ticks_to_next_irq() is None
    timer.pit.advance(100)
    assert not timer.pit.out(0) and timer.irqs == 1


def test_a_control_word_that_raises_out0_raises_irq0_at_the_next_advance(timer):
    # QEMU leaves the line until its timer next fires; pvtool raises it at the next
    # advance (machine/pit.py, Departures).
    timer.program(CH0, 2, 100)
    timer.pit.advance(150)  # mode 2: OUT0 low between reloads
    timer.outb(CONTROL, 0x30)  # mode 0 on the same load: past terminal count
    assert timer.irqs == 1 and timer.pit.out(0)
    timer.pit.advance(1)
    assert timer.irqs == 2 and timer.pit.ticks_to_next_irq() is None


def test_count_zero_means_65536(timer):
    timer.program(CH0, 2, 0)
    assert timer.pit.ticks_to_next_irq() == 0x10000
    timer.pit.advance(1)
    assert timer.latched(CH0) == 0xFFFF


@pytest.mark.parametrize("mode", [4, 5])
def test_strobe_modes_pulse_out_high_for_the_tick_of_terminal_count(timer, mode):
    # pitprobe "ch0 mode 4: status mode 4, out 0, after the count 0, wrapped 1" (the
    # datasheet's OUT is high but for one tick after terminal count); mode 5 starts at
    # the load, as QEMU starts it, not at a gate edge.
    timer.program(CH0, mode, 100)
    assert not timer.pit.out(0) and timer.pit.ticks_to_next_irq() == 100
    timer.pit.advance(100)
    assert timer.irqs == 1 and timer.pit.out(0)
    timer.pit.advance(1)
    assert not timer.pit.out(0) and timer.pit.ticks_to_next_irq() is None


@pytest.mark.parametrize("mode", [6, 7])
def test_modes_6_and_7_count_as_mode_2_and_drive_out_as_mode_0(timer, mode):
    # pitprobe "ch0 mode 6: status mode 6, out 0, after the count 1, wrapped 0"
    timer.program(CH0, mode, 100)
    assert status(timer, CH0) == 0x30 | mode << 1
    timer.pit.advance(130)
    assert timer.latched(CH0) == 70 and timer.pit.out(0)
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
    assert not timer.pit.out(0)
    timer.pit.advance(1)
    # OUT is high for the tick of the reload only: pitprobe "ch0 mode 2: status 34"
    # right after a load (the datasheet's OUT is high but for the tick before it).
    assert timer.latched(CH0) == 100 and timer.pit.out(0)
    timer.pit.advance(1)
    assert not timer.pit.out(0)


def test_a_control_word_restarts_both_byte_flip_flops(timer):
    # pitprobe "word access: second byte high 1, after a control word 1" and "half a
    # count before a control word: dropped 1"
    timer.program(CH2, 0, 0xC0FF)
    timer.inb(CH2)  # the low byte: the high byte would be next
    timer.outb(CONTROL, 0xB0)  # counter 2, word, mode 0
    assert timer.inb(CH2) == 0xFF and timer.inb(CH2) == 0xC0
    timer.outb(CH2, 0x12)  # half a count
    timer.outb(CONTROL, 0xB0)
    timer.outb(CH2, 0x00)
    timer.outb(CH2, 0xF0)
    assert timer.latched(CH2) == 0xF000


def test_a_new_count_takes_effect_at_once_in_mode_2(timer):
    # pitprobe "ch0 mode 2 short: at once 1, reloads 1" (the datasheet loads it at the
    # end of the current period)
    timer.program(CH0, 2, 0xF000)
    timer.pit.advance(100)
    timer.outb(CH0, 0x00)
    timer.outb(CH0, 0x01)
    assert timer.latched(CH0) == 0x100 and timer.pit.ticks_to_next_irq() == 0x100


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


def test_read_back_status_never_shows_null_count(timer):
    # pitprobe "status after control word 34, first byte 34, count 34" (the datasheet
    # sets NULL COUNT from the control word until the count is loaded)
    timer.outb(CONTROL, 0x74)  # counter 1, LSB then MSB, mode 2
    assert status(timer, CH1) & 0x7F == 0x34
    timer.outb(CH1, 0x10)
    assert status(timer, CH1) & 0x7F == 0x34
    timer.outb(CH1, 0x00)
    assert status(timer, CH1) == 0x34  # just loaded: mode 2's OUT is low


def test_status_is_read_before_a_count_latched_earlier(timer):
    # pitprobe "latched twice: status 30, count kept 1"
    timer.program(CH2, 0, 1000)
    timer.outb(CONTROL, 0x80)  # latch counter 2
    timer.pit.advance(10)
    timer.outb(CONTROL, 0x80)  # ignored: the first latch is unread
    assert status(timer, CH2) == 0x30
    assert timer.inb(CH2) | timer.inb(CH2) << 8 == 1000


def test_a_latched_count_outlives_a_control_word(timer):
    # pitprobe "latch across a control word: kept 1" (the datasheet's control word
    # resets the counter's logic, latches included)
    timer.program(CH2, 0, 3000)
    timer.outb(CONTROL, 0x80)
    timer.outb(CONTROL, 0xB0)  # counter 2, word, mode 0: the count runs on
    timer.pit.advance(100)
    assert timer.inb(CH2) | timer.inb(CH2) << 8 == 3000
    assert timer.latched(CH2) == 2900


def test_read_back_can_latch_several_counters(timer):
    timer.program(CH0, 2, 1000)
    timer.program(CH2, 2, 3000)
    timer.pit.advance(10)
    timer.outb(CONTROL, 0xDA)  # count only, counters 0 and 2
    timer.pit.advance(10)
    assert timer.inb(CH0) | timer.inb(CH0) << 8 == 990
    assert timer.inb(CH2) | timer.inb(CH2) << 8 == 2990


def test_bcd_mode_counts_in_binary(timer):
    # pitprobe "bcd 1000: status 31" and "bcd 0: out after 3000 ticks 0": QEMU keeps
    # the BCD bit for the status only.
    timer.program(CH2, 0, 0x1000, bcd=True)
    timer.pit.advance(1)
    assert timer.latched(CH2) == 0x0FFF
    assert status(timer, CH2) == 0x31
    timer.program(CH2, 0, 0, bcd=True)
    timer.pit.advance(0x3000)
    assert timer.latched(CH2) == 0x10000 - 0x3000 and not timer.pit.out(2)


def test_control_port_reads_zero(timer):
    assert timer.inb(CONTROL) == 0


# ---- channels 1 and 2 -------------------------------------------------------------------

def test_other_channels_count_without_touching_irq0(timer):
    timer.program(CH2, 3, 100)
    timer.program(CH1, 2, 18)
    timer.pit.advance(1000)
    assert timer.irqs == 0
    assert timer.latched(CH1) == 18 - 1000 % 18


@pytest.mark.parametrize("mode", range(6))
def test_low_gate_neither_holds_the_count_nor_forces_out_high(timer, mode):
    # pitprobe "gate low, mode M: out ..., counted 1" for every mode (the datasheet's
    # low gate suspends modes 0, 2, 3 and 4 and holds OUT high in modes 2 and 3).
    # Channel 2's gate starts low, as QEMU resets it.
    timer.program(CH2, mode, 1000)
    timer.pit.advance(100)
    assert timer.latched(CH2) == (1000 - 200 if mode == 3 else 900)
    assert timer.pit.out(2) == (mode in (1, 3))


@pytest.mark.parametrize("mode, restarts", [(0, False), (1, True), (2, True), (3, True),
                                            (4, False), (5, True)])
def test_rising_gate_restarts_modes_1_2_3_and_5(timer, mode, restarts):
    # pitprobe "gate edge, mode M: restarted ..., out ..."
    timer.program(CH2, mode, 1000)
    timer.pit.advance(100)
    timer.pit.set_gate(2, True)
    assert (timer.pit.channels[CH2].elapsed == 0) == restarts
    timer.pit.set_gate(2, False)
    timer.pit.advance(10)
    timer.pit.set_gate(2, True)  # a second edge restarts again
    assert (timer.pit.channels[CH2].elapsed == 0) == restarts


def test_mode_1_is_high_until_terminal_count_from_the_load_or_a_gate_edge(timer):
    # pitprobe "ch2 mode 1: ... out 1, after the count 0" and "gate edge, mode 1:
    # restarted 1, out 1" (the datasheet's OUT goes low at the trigger, high at the end)
    timer.program(CH2, 1, 50)
    assert timer.pit.out(2)
    timer.pit.advance(100)
    assert not timer.pit.out(2)
    timer.pit.set_gate(2, True)
    assert timer.pit.out(2) and timer.latched(CH2) == 50
    timer.pit.advance(50)
    assert not timer.pit.out(2)


def test_time_never_runs_backwards(timer):
    with pytest.raises(ValueError):
        timer.pit.advance(-1)
