"""machine/fdc.py: the floppy controller with no drive, as a kernel detects it."""

from pvtool.machine.fdc import FDC_BASE, FloppyController
from pvtool.machine.ports import PortBus

DOR, MSR, FIFO, DIR = FDC_BASE + 2, FDC_BASE + 4, FDC_BASE + 5, FDC_BASE + 7


def controller():
    bus, lines = PortBus(), []
    fdc = FloppyController(lines.append)
    fdc.register(bus)
    return bus, fdc, lines


def command(bus, *values):
    """Send a command's bytes; read its result phase while the MSR says there is one."""
    for value in values:
        assert bus.read(MSR, 1) & 0xC0 == 0x80
        bus.write(FIFO, 1, value)
    result = []
    while bus.read(MSR, 1) & 0xC0 == 0xC0:
        result.append(bus.read(FIFO, 1))
    return result


def reset(bus):
    bus.write(DOR, 1, 0x08)
    bus.write(DOR, 1, 0x0C)


def test_at_entry_it_waits_for_a_command_with_the_disk_change_line_high():
    bus, _, _ = controller()
    assert [bus.read(port, 1) for port in (DOR, MSR, DIR)] == [0x0C, 0x80, 0x80]
    assert bus.read(FDC_BASE, 1) == bus.read(FDC_BASE + 6, 1) == 0xFF  # not decoded


def test_a_reset_raises_irq6_and_four_senses_report_each_drive_then_invalid():
    bus, _, lines = controller()
    reset(bus)
    assert lines == [True]
    assert command(bus, 0x08) == [0xC0, 0]
    assert lines == [True, False]
    assert [command(bus, 0x08) for _ in range(4)] == [[0xC1, 0], [0xC2, 0], [0xC3, 0], [0x80]]


def test_reading_the_msr_in_reset_ends_the_reset_without_one():
    bus, fdc, lines = controller()
    bus.write(DOR, 1, 0x08)
    bus.read(MSR, 1)
    bus.write(DOR, 1, 0x0C)
    assert lines == [] and fdc.senses == 0
    assert command(bus, 0x08) == [0x80]


def test_version_specify_configure_lock_and_dumpreg():
    bus, _, _ = controller()
    assert command(bus, 0x10) == [0x90]
    assert command(bus, 0x03, 0xDF, 0x02) == []
    assert command(bus, 0x13, 0x00, 0x57, 0x05) == []
    assert command(bus, 0x94) == [0x10]
    assert command(bus, 0x0E) == [0, 0, 0, 0, 0x0D, 0x03, 0xFF, 0x80, 0x57, 0x05]
    assert command(bus, 0x14) == [0x00]


def test_a_command_it_does_not_answer_is_invalid():
    bus, _, _ = controller()
    assert command(bus, 0x1F) == [0x80]


def test_the_msr_says_busy_while_parameters_are_due_and_nothing_is_taken_in_reset():
    bus, _, _ = controller()
    bus.write(FIFO, 1, 0x03)
    assert bus.read(MSR, 1) == 0x90
    bus.write(DOR, 1, 0x08)
    bus.write(FIFO, 1, 0x10)
    bus.write(DOR, 1, 0x0C)
    assert command(bus, 0x10) == [0x90]  # the reset dropped the half-sent SPECIFY


def test_motor_and_drive_bits_show_in_status_register_b():
    bus, _, _ = controller()
    bus.write(DOR, 1, 0x1D)
    assert bus.read(FDC_BASE + 1, 1) == 0xE1
    assert bus.read(MSR, 4) == 0xFFFF_FFFF  # a portio list takes no dword
