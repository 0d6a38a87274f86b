"""machine/vbe.py: the Bochs VBE registers of QEMU's standard VGA, word-wide only."""

import pytest

from pvtool.machine.ports import PortBus
from pvtool.machine.vbe import VBE_PORT, BochsVbe

INDEX, DATA, DATA2 = VBE_PORT, VBE_PORT + 1, VBE_PORT + 2


@pytest.fixture
def bus():
    bus = PortBus()
    BochsVbe().register(bus)
    return bus


def register(bus, index, port=DATA):
    bus.write(INDEX, 2, index)
    return bus.read(port, 2)


def test_seabios_leaves_the_enable_register_selected_in_text_mode(bus):
    assert bus.read(INDEX, 2) == 4
    assert bus.read(DATA, 2) == 0


def test_the_id_and_the_video_memory_tell_a_driver_what_it_has(bus):
    assert register(bus, 0) == 0xB0C5
    assert register(bus, 10, DATA2) == 0x100  # 16 MiB in 64 KiB units
    assert register(bus, 11) == 0


def test_only_known_interface_ids_are_taken(bus):
    bus.write(INDEX, 2, 0)
    bus.write(DATA, 2, 0x1234)
    assert bus.read(DATA, 2) == 0xB0C5
    bus.write(DATA, 2, 0xB0C2)
    assert bus.read(DATA, 2) == 0xB0C2


def test_getcaps_shows_the_largest_mode_and_a_written_mode_reads_back(bus):
    bus.write(INDEX, 2, 1)
    bus.write(DATA, 2, 1024)
    bus.write(INDEX, 2, 4)
    bus.write(DATA, 2, 0x02)
    assert [register(bus, index) for index in (1, 2, 3)] == [16000, 12000, 32]
    bus.write(INDEX, 2, 4)
    bus.write(DATA, 2, 0)
    assert register(bus, 1) == 1024


def test_bytes_and_dwords_reach_nothing(bus):
    assert bus.read(INDEX, 1) == bus.read(DATA, 1) == 0xFF
    assert bus.read(INDEX, 4) == 0xFFFF_FFFF
    bus.write(INDEX, 1, 0)
    assert bus.read(INDEX, 2) == 4
