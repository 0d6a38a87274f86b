"""machine/ports.py: the port bus, alone and under a guest's in/out instructions."""

import pytest

from pvtool.machine.delay_port import DELAY_PORT, DelayPort
from pvtool.machine.ports import PortBus, Wide
from tests.machine.harness import assert_same_as_qemu, run_native


class Recorder:
    """A device that logs every access it sees and answers reads with `answer`."""

    def __init__(self, answer: int = 0):
        self.answer = answer
        self.log: list[tuple] = []

    def read(self, offset: int, size: int) -> int:
        self.log.append(("read", offset, size))
        return self.answer

    def write(self, offset: int, size: int, value: int) -> None:
        self.log.append(("write", offset, size, value))


def test_a_device_sees_offsets_inside_its_own_range():
    bus, device = PortBus(), Recorder(answer=0x42)
    bus.register(device, 0x1F0, 8)

    bus.write(0x1F2, 1, 0x11)
    bus.write(0x1F0, 2, 0xBEEF)
    assert bus.read(0x1F7, 1) == 0x42

    assert device.log == [("write", 2, 1, 0x11), ("write", 0, 2, 0xBEEF), ("read", 7, 1)]
    assert bus.unassigned_accesses == 0


def test_values_are_cut_to_the_access_size_both_ways():
    bus, device = PortBus(), Recorder(answer=0x1234_5678)
    bus.register(device, 0x60, 1)

    assert bus.read(0x60, 1) == 0x78
    assert bus.read(0x60, 2) == 0x5678
    assert bus.read(0x60, 4) == 0x1234_5678
    bus.write(0x60, 1, 0x1FF)
    assert device.log[-1] == ("write", 0, 1, 0xFF)


@pytest.mark.parametrize("size, value", [(1, 0xFF), (2, 0xFFFF), (4, 0xFFFF_FFFF)])
def test_unassigned_ports_read_all_ones_and_are_counted(size, value):
    bus, device = PortBus(), Recorder()
    bus.register(device, 0x3F8, 8)

    assert bus.read(0x3F7, size) == value
    bus.write(0x400, size, 0)
    assert bus.unassigned_accesses == 2
    assert device.log == []


def test_two_devices_cannot_share_a_port():
    bus, first, second = PortBus(), Recorder(answer=1), Recorder(answer=2)
    bus.register(first, 0x40, 4)

    with pytest.raises(ValueError, match="0x40"):
        bus.register(second, 0x3E, 4)  # 0x3e-0x41 overlaps 0x40-0x43

    assert bus.read(0x40, 1) == 1
    # The refused device got none of its ports, not even those below the clash.
    assert bus.read(0x3E, 1) == 0xFF
    assert bus.read(0x3F, 1) == 0xFF
    bus.register(second, 0x3C, 4)  # the free range next to it is still free
    assert bus.read(0x3F, 1) == 2


def test_a_wide_access_at_an_unassigned_port_reads_all_ones_whoever_follows():
    bus = PortBus()
    bus.register(Recorder(answer=0x12), 0x61, 1, width=1)
    assert bus.read(0x60, 2) == 0xFFFF


def test_a_portio_list_splits_a_word_only_inside_its_range_and_takes_no_dword():
    bus, device, neighbour = PortBus(), Recorder(answer=0x42), Recorder(answer=0x99)
    bus.register(device, 0x3F4, 2, width=1, wide=Wide.PORTIO)
    bus.register(neighbour, 0x3F6, 1, width=1)
    assert bus.read(0x3F4, 2) == 0x4242
    assert bus.read(0x3F5, 2) == 0xFF42  # 0x3f6 is past the list's end
    assert bus.read(0x3F4, 4) == 0xFFFF_FFFF
    bus.write(0x3F5, 2, 0x1234)
    bus.write(0x3F4, 4, 0x1234_5678)  # vanishes
    assert device.log[-1] == ("write", 1, 1, 0x34)
    assert neighbour.log == []


def test_a_one_port_region_repeats_its_register_for_each_byte():
    bus, device = PortBus(), Recorder(answer=0x1C)
    bus.register(device, 0x64, 1, width=1, wide=Wide.SAME_REGISTER)
    assert bus.read(0x64, 4) == 0x1C1C_1C1C
    bus.write(0x64, 2, 0x0201)
    assert device.log[-2:] == [("write", 0, 1, 0x01), ("write", 0, 1, 0x02)]


@pytest.mark.parametrize("size", [1, 2, 4])
def test_the_delay_port_reads_all_ones_at_every_width_and_takes_writes(size):
    bus = PortBus()
    bus.register(DelayPort(), DELAY_PORT, 1)
    bus.register(Recorder(answer=0), DELAY_PORT + 1, 3, width=1)
    assert bus.read(DELAY_PORT, size) == (1 << (8 * size)) - 1
    bus.write(DELAY_PORT, size, 0)
    assert bus.unassigned_accesses == 0


def test_a_guest_reads_all_ones_from_ports_nothing_answers_as_on_qemu(build):
    guest = build("""
    .include "macros.inc"
    .globl test_main
test_main:
    mov $0x2f8, %dx             # COM2: no second UART on either machine
    in %dx, %al
    REC %eax
    xor %eax, %eax
    in %dx, %ax
    REC %eax
    in %dx, %eax
    REC %eax
    mov $0x80, %dx
    xor %eax, %eax
    in %dx, %al
    REC %eax
    mov $0x2fc, %dx             # outs to nothing vanish
    out %al, %dx
    xor %eax, %eax
    ret
""")
    run = run_native(guest)

    assert run.records() == [0xFF, 0xFFFF, 0xFFFF_FFFF, 0xFF]
    assert_same_as_qemu(run)
