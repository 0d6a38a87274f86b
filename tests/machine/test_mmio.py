"""Memory-mapped devices (machine/mmio.py): a device sees offsets inside its own
range, every access is counted, ranges never overlap, and an access where there is
neither RAM nor a device ends the run with the emulator's error."""

import pytest

from pvtool.machine.cpu import EAX, EIP
from pvtool.machine.exits import Exit
from pvtool.machine.pc import Machine
from pvtool.machine.stop import StopKind

BASE = 0xFEB00000  # free on pvtool's PC (the HPET now sits at 0xFED00000)


class Registers:
    def __init__(self):
        self.writes: list[tuple[int, int, int]] = []

    def read(self, offset: int, size: int) -> int:
        return 0x1000 + offset * 0x10 + size

    def write(self, offset: int, size: int, value: int) -> None:
        self.writes.append((offset, size, value))


@pytest.fixture
def machine() -> Machine:
    return Machine(ram_size=16 << 20, output=lambda data: None)


def test_a_device_sees_offsets_inside_its_range(machine):
    device = Registers()
    machine.mmio.register(device, BASE, 0x1000)
    machine.memory.write_phys(BASE + 0x10, (0xAB).to_bytes(4, "little"))
    value = int.from_bytes(machine.memory.read_phys(BASE + 0x20, 4), "little")
    assert device.writes == [(0x10, 4, 0xAB)]
    assert value == 0x1000 + 0x20 * 0x10 + 4
    assert machine.exits[Exit.MMIO] == 2


def test_overlapping_ranges_are_refused(machine):
    machine.mmio.register(Registers(), BASE, 0x1000)
    with pytest.raises(ValueError, match="overlaps"):
        machine.mmio.register(Registers(), BASE + 0x800, 0x1000)


def test_a_guest_store_to_an_unassigned_address_stops_the_run(machine):
    code = bytes.fromhex("c705" "00000040" "01000000")  # mov dword [0x40000000], 1
    machine.memory.write_phys(0x1000, code)
    machine.cpu.write(EIP, 0x1000)
    machine.run_slice(1)
    assert machine.stop.kind is StopKind.EMULATOR_ERROR
    assert "UNMAPPED" in machine.stop.reason


def test_an_open_bus_reads_zero_and_ignores_writes_as_qemu_does(machine):
    """Native mode's unassigned memory (pcprobe measured QEMU: reads 0, writes lost)."""
    machine.mmio.open_bus()
    code = bytes.fromhex("c705" "00000040" "78563412"  # mov dword [0x40000000], 0x12345678
                         "a1" "00000040")  # mov eax, [0x40000000]
    machine.memory.write_phys(0x1000, code)
    machine.cpu.write(EIP, 0x1000)
    machine.cpu.write(EAX, 0xFFFF)
    machine.run_slice(2)
    assert machine.stop is None
    assert machine.cpu.read(EAX) == 0
    assert machine.cpu.ip == 0x1000 + len(code)


def test_an_open_bus_still_refuses_to_run_code(machine):
    machine.mmio.open_bus()
    machine.cpu.write(EIP, 0x40000000)
    machine.run_slice(1)
    assert machine.stop.kind is StopKind.EMULATOR_ERROR
