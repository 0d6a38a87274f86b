"""machine/vga_text.py: the VGA's text-mode registers, port by port (IBM VGA Technical
Reference; QEMU's answers are compared whole by tests/e2e/test_cgacon.py), and the
screen the firmware leaves."""

import pytest

from pvtool.machine.ports import PortBus
from pvtool.machine.vga_text import (
    BLANK_CELL,
    COLUMNS,
    FIRMWARE_LINES,
    TEXT_BUFFER_SIZE,
    VgaText,
    firmware_screen,
)

CRTC, CRTC_DATA, STATUS = 0x3D4, 0x3D5, 0x3DA
MONO_CRTC, MONO_STATUS = 0x3B4, 0x3BA
ATTR, ATTR_READ, MISC_WRITE, MISC_READ = 0x3C0, 0x3C1, 0x3C2, 0x3CC
SEQ, GFX = 0x3C4, 0x3CE


@pytest.fixture
def bus():
    ports = PortBus()
    vga = VgaText()
    vga.register(ports)
    return ports


def crtc(bus, index, value=None):
    bus.write(CRTC, 1, index)
    if value is not None:
        bus.write(CRTC_DATA, 1, value)
    return bus.read(CRTC_DATA, 1)


def test_the_cursor_location_registers_read_back_what_was_written(bus):
    assert crtc(bus, 0x0E, 0x07) == 0x07
    assert crtc(bus, 0x0F, 0xD0) == 0xD0
    assert bus.read(CRTC, 1) == 0x0F  # the index reads back too


def test_the_cursor_starts_below_the_firmwares_lines(bus):
    assert crtc(bus, 0x0E) << 8 | crtc(bus, 0x0F) == len(FIRMWARE_LINES) * COLUMNS


def test_crtc_registers_0_to_7_ignore_writes_while_register_0x11_bit_7_is_set(bus):
    before = crtc(bus, 0x01)
    assert crtc(bus, 0x01, before ^ 0xFF) == before
    assert crtc(bus, 0x07, 0xFF) & 0x10  # but bit 4 of the overflow register moves
    crtc(bus, 0x11, crtc(bus, 0x11) & 0x7F)
    assert crtc(bus, 0x01, 0x42) == 0x42


def test_input_status_1_flips_its_retrace_bits_on_every_read(bus):
    assert [bus.read(STATUS, 1) for _ in range(4)] == [0x09, 0x00, 0x09, 0x00]


def test_the_crtc_answers_at_3b4_only_once_misc_output_selects_mono(bus):
    assert bus.read(MONO_CRTC, 1) == 0xFF and bus.read(MONO_STATUS, 1) == 0xFF
    bus.write(MISC_WRITE, 1, bus.read(MISC_READ, 1) & ~1)
    bus.write(MONO_CRTC, 1, 0x0E)
    assert bus.read(MONO_CRTC, 1) == 0x0E
    assert bus.read(CRTC, 1) == 0xFF and bus.read(STATUS, 1) == 0xFF


def test_the_attribute_controller_alternates_index_and_data_until_status_is_read(bus):
    bus.read(STATUS, 1)
    bus.write(ATTR, 1, 0x21)  # index 1, palette source set
    bus.write(ATTR, 1, 0x3A)  # its data
    bus.write(ATTR, 1, 0x22)  # the flip-flop is back on "index"
    assert bus.read(ATTR, 1) == 0x22
    bus.write(ATTR, 1, 0x15)
    bus.read(STATUS, 1)  # resets the flip-flop: the next write is an index again
    bus.write(ATTR, 1, 0x01)
    assert bus.read(ATTR_READ, 1) == 0x3A


@pytest.mark.parametrize("index_port", [SEQ, GFX])
def test_sequencer_and_graphics_registers_read_back_through_their_index(bus, index_port):
    bus.write(index_port, 1, 0x02)
    bus.write(index_port + 1, 1, 0x0C)
    assert bus.read(index_port, 1) == 0x02
    assert bus.read(index_port + 1, 1) == 0x0C


def test_the_firmware_screen_is_seabioss_two_lines_on_a_blank_32_kib_window():
    screen = firmware_screen()
    assert len(screen) == TEXT_BUFFER_SIZE
    first_row = screen[:COLUMNS * 2]
    # SeaBIOS's banner as QEMU 7.2 shows it (test_cgacon compares the whole screen).
    assert first_row[::2].rstrip(b" ") == b"SeaBIOS (version 1.16.2-debian-1.16.2-1)"
    assert set(first_row[1::2]) == {0x07}
    assert screen[2 * COLUMNS * 2:] == BLANK_CELL * (TEXT_BUFFER_SIZE // 2 - 2 * COLUMNS)
