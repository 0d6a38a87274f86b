"""machine/firmware: the IVT, the BIOS data area and the EBDA in a fresh machine's
memory, decoded with the classic BDA layout (IBM PC/AT Technical Reference). The
values are QEMU's as guests/probeboot prints them (tests/e2e/test_probeboot.py compares
the whole areas with a live QEMU)."""

import struct

import pytest

from pvtool.machine.disk import DiskImage
from pvtool.machine.firmware.bios_data import bios_data_area, extended_bios_data_area
from pvtool.machine.firmware.post import power_on
from pvtool.machine.pc import Machine


def far_pointer(memory: bytes, vector: int) -> tuple[int, int]:
    """(segment, offset) of an IVT entry."""
    offset, segment = struct.unpack_from("<HH", memory, 4 * vector)
    return segment, offset


def powered_on(disk: DiskImage | None = None) -> bytes:
    machine = Machine(output=lambda data: None, disks=() if disk is None else (disk,))
    power_on(machine)
    return machine.memory.read_phys(0, 0xA0000)


@pytest.fixture
def one_mib_disk(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(1 << 20))
    with DiskImage.open(path, snapshot=True) as disk:
        yield disk


def test_the_bda_tells_where_the_ports_memory_and_ebda_are():
    low = powered_on()
    assert struct.unpack_from("<4H", low, 0x400) == (0x3F8, 0, 0, 0)  # COM1 only
    assert struct.unpack_from("<H", low, 0x408)[0] == 0x378  # LPT1
    ebda = struct.unpack_from("<H", low, 0x40E)[0] << 4
    assert ebda == 639 * 1024
    assert struct.unpack_from("<H", low, 0x413)[0] == 639  # KiB, as int 0x12 says
    equipment = struct.unpack_from("<H", low, 0x410)[0]
    assert equipment >> 4 & 3 == 0b10  # 80x25 colour
    assert equipment >> 9 & 7 == 1 and equipment >> 14 == 1  # one COM, one LPT port
    assert low[ebda] == 1  # the EBDA's size in KiB
    assert low[0x475] == 0  # no hard disk


def test_the_bda_describes_the_text_screen_seabios_left():
    low = powered_on()
    assert low[0x449] == 3  # mode 3
    assert struct.unpack_from("<HH", low, 0x44A) == (80, 0x1000)
    assert struct.unpack_from("<H", low, 0x463)[0] == 0x3D4  # colour CRTC
    assert low[0x484] == 25 - 1


def test_the_timer_count_is_ticks_since_midnight_at_18_2_hz():
    noon = bios_data_area(hard_disks=0, seconds_since_midnight=43200 + 86400 * 3)
    # 43,200 s at 1,193,182 / 65,536 = 18.2065 Hz is 786,521.5 ticks; the BIOS counts whole
    # ones.
    assert struct.unpack_from("<I", noon, 0x6C)[0] == 786521
    midnight = bios_data_area(hard_disks=0, seconds_since_midnight=86400 * 5)
    assert struct.unpack_from("<I", midnight, 0x6C)[0] == 0


def test_unset_vectors_point_at_the_default_handler_and_user_vectors_are_null():
    low = powered_on()
    assert far_pointer(low, 0x80) == (0xF000, 0xFF53)
    assert far_pointer(low, 0x10) == (0xC000, 0x578B)  # the VGA BIOS
    assert [far_pointer(low, v) for v in (0x60, 0x66, 0x79)] == [(0, 0)] * 3
    assert far_pointer(low, 0x41) == (0xF000, 0xFF53)  # no disk: no parameter table


def test_a_disk_gets_a_parameter_table_in_the_ebda(one_mib_disk):
    low = powered_on(one_mib_disk)
    assert low[0x475] == 1
    segment, offset = far_pointer(low, 0x41)
    table = low[(segment << 4) + offset:][:16]
    cylinders, heads = struct.unpack_from("<HB", table)
    # 2048 sectors of 512 bytes as 16 heads of 63 sectors: 2 whole cylinders.
    assert (cylinders, heads, table[14]) == (2, 16, 63)
    assert struct.unpack_from("<H", table, 5)[0] == 0xFFFF  # no write precompensation
    assert table[8] == 0xC8  # retries off, more than 8 heads
    assert struct.unpack_from("<H", table, 12)[0] == cylinders  # landing zone


def test_seabios_leaves_device_1_selected_on_every_channel_with_a_drive(one_mib_disk):
    """QEMU with one disk (index 0), as highhalf measures it: the primary's Device
    register reads 0xB0 and the absent slave's status 0; the secondary (its empty
    CD-ROM) likewise."""
    machine = Machine(output=lambda data: None, disks=(one_mib_disk,))
    power_on(machine)
    registers = [machine.ports.read(port, 1) for port in (0x1F6, 0x1F7, 0x176, 0x177)]
    assert registers == [0xB0, 0, 0xB0, 0]


def test_a_channel_with_nothing_on_it_still_reads_zero_after_power_on():
    machine = Machine(output=lambda data: None, disks=())
    power_on(machine)
    assert [machine.ports.read(port, 1) for port in (0x1F6, 0x1F7)] == [0, 0]


def test_the_ebda_without_a_disk_is_its_size_and_zeros():
    assert extended_bios_data_area([]) == b"\x01" + bytes(1023)
