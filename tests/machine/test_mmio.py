"""Memory-mapped devices (machine/mmio.py): a device sees offsets inside its own
range, every access is counted, ranges never overlap, and an access where there is
neither RAM nor a device ends the run with the emulator's error."""

import itertools

import pytest

from pvtool.machine.cpu import EAX, EBX, EIP
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


# lea 0x1000(%esi), %esi is 8d b6 00 10 00 00; cmp $imm32, %esi is 81 fe imm32.
SWEEP_64_MIB = bytes.fromhex("be" "00000010"  # mov esi, 0x10000000
                             "0b1e"  # or ebx, [esi]
                             "c706" "ffffffff"  # mov dword [esi], -1
                             "81c6" "00100000"  # add esi, 0x1000
                             "81fe" "00000014"  # cmp esi, 0x14000000
                             "72ea"  # jb (the or)
                             "f4")  # hlt


def test_an_open_bus_sweep_maps_its_whole_gap_once(machine):
    """16384 pages swept, one map: the gap from the RAM's end to the IOAPIC."""
    machine.mmio.open_bus()
    machine.memory.write_phys(0x1000, SWEEP_64_MIB)
    machine.cpu.write(EIP, 0x1000)
    machine.run_slice(5 * 0x4000 + 2)
    assert machine.stop is None
    assert machine.cpu.read(EBX) == 0
    assert machine.cpu.ip == 0x1000 + len(SWEEP_64_MIB)
    assert machine.mmio.open_blocks == [(16 << 20, 0xFEC00000 - (16 << 20))]
    assert machine.exits[Exit.MMIO] == 2 * 0x4000


CODE_PAGES = itertools.count(2)


def read_by_guest(machine, address: int) -> int:
    """EAX after the guest ran `mov eax, [ADDRESS]` (a host read_phys sees no hook),
    each time from a new page: Unicorn keeps code it translated at an address."""
    where = 0x1000 * next(CODE_PAGES)
    code = bytes.fromhex("a1") + address.to_bytes(4, "little")
    machine.memory.write_phys(where, code)
    machine.cpu.write(EIP, where)
    machine.cpu.write(EAX, 0xFFFF)
    machine.run_slice(1)
    assert machine.stop is None
    return machine.cpu.read(EAX)


def test_an_access_straddling_the_ram_end_maps_the_gap_after_it(machine):
    machine.mmio.open_bus()
    end = 16 << 20
    machine.memory.write_phys(end - 2, b"\xab\xcd")
    assert read_by_guest(machine, end - 2) == 0xCDAB
    assert machine.mmio.open_blocks == [(end, 0xFEC00000 - end)]


def test_a_device_registered_over_open_bus_takes_its_place(machine):
    machine.mmio.open_bus()
    assert read_by_guest(machine, BASE) == 0
    machine.mmio.register(Registers(), BASE, 0x1000)
    assert machine.mmio.open_blocks == []
    assert read_by_guest(machine, BASE) == 0x1004
    assert read_by_guest(machine, BASE + 0x1000) == 0  # above the device
    assert read_by_guest(machine, BASE - 4) == 0  # and below it
    assert machine.mmio.open_blocks == [(BASE + 0x1000, 0xFEC00000 - BASE - 0x1000),
                                        (16 << 20, BASE - (16 << 20))]
