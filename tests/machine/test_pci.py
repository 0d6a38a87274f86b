"""machine/pci.py: configuration mechanism #1 through ports 0xCF8/0xCFC, as a kernel
uses it, on the functions of QEMU's PC (machine/pci_devices.py)."""

import pytest

from pvtool.machine.pc import Machine
from pvtool.machine.pci import CONFIG_ADDRESS_PORT, CONFIG_DATA_PORT, Bar, PciFunction

ENABLE = 1 << 31


def address(slot: int, function: int, register: int, bus: int = 0) -> int:
    return ENABLE | bus << 16 | slot << 11 | function << 8 | register


@pytest.fixture
def ports():
    return Machine(output=lambda data: None).ports


def read(ports, slot, function, register, size=4):
    ports.write(CONFIG_ADDRESS_PORT, 4, address(slot, function, register & ~3))
    return ports.read(CONFIG_DATA_PORT + (register & 3), size)


def write(ports, slot, function, register, value, size=4):
    ports.write(CONFIG_ADDRESS_PORT, 4, address(slot, function, register & ~3))
    ports.write(CONFIG_DATA_PORT + (register & 3), size, value)


def test_a_dword_read_gives_vendor_and_device_of_the_host_bridge(ports):
    assert read(ports, 0, 0, 0) == 0x1237_8086  # Intel 82441FX


def test_byte_and_word_reads_at_any_offset_agree_with_the_dword(ports):
    dword = read(ports, 1, 3, 0x08)  # revision and class code of the PIIX4 PM
    assert read(ports, 1, 3, 0x0A, size=2) == dword >> 16
    bytewise = [read(ports, 1, 3, 0x08 + i, size=1) for i in range(4)]
    assert bytewise == list(dword.to_bytes(4, "little"))


def test_the_address_latch_reads_back_as_written(ports):
    ports.write(CONFIG_ADDRESS_PORT, 4, address(2, 0, 0x10))
    assert ports.read(CONFIG_ADDRESS_PORT, 4) == address(2, 0, 0x10)


def test_with_bit_31_clear_the_data_port_reads_all_ones(ports):
    ports.write(CONFIG_ADDRESS_PORT, 4, address(0, 0, 0) & ~ENABLE)
    assert ports.read(CONFIG_DATA_PORT, 4) == 0xFFFF_FFFF
    assert ports.read(CONFIG_DATA_PORT, 1) == 0xFF


@pytest.mark.parametrize("slot, function, bus", [(31, 7, 0), (3, 0, 0), (0, 0, 1)])
def test_a_function_nobody_answers_reads_all_ones_and_ignores_writes(ports, slot, function, bus):
    ports.write(CONFIG_ADDRESS_PORT, 4, address(slot, function, 0, bus))
    ports.write(CONFIG_DATA_PORT, 4, 0x1234_5678)
    assert ports.read(CONFIG_DATA_PORT, 4) == 0xFFFF_FFFF


def test_identity_fields_are_read_only(ports):
    before = read(ports, 2, 0, 0)
    write(ports, 2, 0, 0, 0)
    write(ports, 2, 0, 0x08, 0)
    assert read(ports, 2, 0, 0) == before == 0x1111_1234
    assert read(ports, 2, 0, 0x08) == 0x0300_0002


def test_the_interrupt_line_is_writable_and_the_pin_is_not(ports):
    write(ports, 1, 3, 0x3C, 0x0000_FF0B)
    assert read(ports, 1, 3, 0x3C) == 0x0000_010B  # pin A stays


def test_a_byte_write_changes_only_that_byte(ports):
    write(ports, 1, 0, 0x61, 0x05, size=1)  # PIIX3's PIRQB route
    assert read(ports, 1, 0, 0x60) == 0x0B0B_050A


@pytest.mark.parametrize("slot, function, register, mask", [
    (2, 0, 0x10, 0xFF00_0008),  # VGA framebuffer: 16 MiB, prefetchable memory
    (2, 0, 0x18, 0xFFFF_F000),  # VGA MMIO: 4 KiB
    (2, 0, 0x30, 0xFFFF_0001),  # VGA ROM: 64 KiB, its enable bit
    (1, 1, 0x20, 0xFFFF_FFF1),  # IDE bus master: 16 I/O ports
    (2, 0, 0x14, 0),  # no BAR there
])
def test_a_bar_sizes_like_hardware_and_restores(ports, slot, function, register, mask):
    saved = read(ports, slot, function, register)
    write(ports, slot, function, register, 0xFFFF_FFFF)
    assert read(ports, slot, function, register) == mask
    write(ports, slot, function, register, saved)
    assert read(ports, slot, function, register) == saved


def test_a_function_is_built_from_its_header_fields():
    function = PciFunction(3, 1, 0x10EC, 0x8139, 0x020000, revision=0x20, command=0x7,
                           interrupt=(11, 1), bars=(Bar(1, 256, 0xFEB00000),))
    assert function.read(0, 4) == 0x8139_10EC
    assert function.read(0x08, 4) == 0x0200_0020
    assert function.read(0x14, 4) == 0xFEB0_0000
    assert function.read(0x3C, 2) == 0x010B
    function.write(0x14, 4, 0xFFFF_FFFF)
    assert function.read(0x14, 4) == 0xFFFF_FF00


def test_an_access_running_past_the_end_of_the_space_keeps_to_it(ports):
    ports.write(CONFIG_ADDRESS_PORT, 4, address(1, 3, 0xFC))
    ports.write(CONFIG_DATA_PORT + 3, 4, 0xFFFF_FFFF)
    assert ports.read(CONFIG_DATA_PORT + 3, 4) == 0  # read-only, and nothing beyond


def test_the_latch_holds_seabios_last_selection_and_every_read_of_it_gives_its_low_bytes(ports):
    assert ports.read(CONFIG_ADDRESS_PORT, 4) == 0x8000_005C  # measured with guests/portscan
    assert [ports.read(CONFIG_ADDRESS_PORT + i, 1) for i in (0, 2, 3)] == [0x5C] * 3
    assert ports.read(CONFIG_ADDRESS_PORT + 2, 2) == 0x005C
    ports.write(CONFIG_ADDRESS_PORT + 2, 2, 0x1234)  # only a dword at 0xCF8 writes it
    ports.write(CONFIG_ADDRESS_PORT, 2, 0x1234)
    assert ports.read(CONFIG_ADDRESS_PORT, 4) == 0x8000_005C
