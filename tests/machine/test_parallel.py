"""machine/parallel.py: LPT1 in standard mode, as SeaBIOS leaves it on QEMU."""

from pvtool.machine.parallel import LPT1_BASE, ParallelPort
from pvtool.machine.ports import PortBus

DATA, STATUS, CONTROL = LPT1_BASE, LPT1_BASE + 1, LPT1_BASE + 2


def lpt1():
    bus = PortBus()
    ParallelPort().register(bus)
    return bus


def test_at_entry_it_holds_seabios_detection_pattern_and_qemu_reset_state():
    bus = lpt1()
    assert [bus.read(DATA + i, 1) for i in range(8)] == [0xAA, 0xD9, 0xCC] + [0xFF] * 5
    assert bus.read(DATA, 2) == 0xD9AA
    assert bus.read(DATA, 4) == 0xFFFF_FFFF  # a portio list takes no dword


def test_strobing_a_byte_clears_busy_and_releasing_the_strobe_sets_it():
    bus = lpt1()
    bus.write(DATA, 1, 0x41)
    bus.write(CONTROL, 1, 0x0D)  # select, init, strobe
    assert bus.read(STATUS, 1) == 0x59
    bus.write(CONTROL, 1, 0x0C)
    assert bus.read(STATUS, 1) == 0xD9
    assert bus.read(CONTROL, 1) == 0xCC


def test_with_busy_clear_and_no_strobe_status_reads_toggle_acknowledge():
    bus = lpt1()
    bus.write(CONTROL, 1, 0x0D)
    bus.write(CONTROL, 1, 0x04)  # strobe released without select: busy stays clear
    assert [bus.read(STATUS, 1) for _ in range(3)] == [0x59, 0x19, 0xD9]


def test_clearing_init_resets_the_status_and_the_direction_bit_reads_the_input():
    bus = lpt1()
    bus.write(CONTROL, 1, 0x0D)
    bus.write(CONTROL, 1, 0x20)
    assert bus.read(STATUS, 1) == 0xD9
    assert bus.read(DATA, 1) == 0xFF
    assert bus.read(CONTROL, 1) == 0xE0
