"""machine/elcr.py: the PIIX's edge/level control registers at 0x4D0 and 0x4D1."""

from pvtool.machine.elcr import ELCR_PORT, register_elcr
from pvtool.machine.ports import PortBus


def test_seabios_leaves_irq_10_and_11_level_triggered():
    bus = PortBus()
    register_elcr(bus)
    assert [bus.read(ELCR_PORT + i, 1) for i in range(2)] == [0x00, 0x0C]


def test_the_always_edge_lines_cannot_be_made_level():
    bus = PortBus()
    master, slave = register_elcr(bus)
    bus.write(ELCR_PORT, 1, 0xFF)
    bus.write(ELCR_PORT + 1, 1, 0xFF)
    assert (master.value, slave.value) == (0xF8, 0xDE)  # not IRQ 0-2, 8 or 13


def test_a_wide_read_repeats_the_one_register_as_qemu_region_does():
    bus = PortBus()
    register_elcr(bus)
    assert bus.read(ELCR_PORT, 2) == 0x0000
    assert bus.read(ELCR_PORT + 1, 4) == 0x0C0C_0C0C
