"""The I/O APIC (machine/ioapic.py): registers as measured on QEMU 7.2 with
guests/apicprobe (the e2e test compares the guest's dump with QEMU's), and its
redirection to the local APIC."""

import pytest

from pvtool.machine.ioapic import IoApic
from pvtool.machine.pic import Pic8259Pair

IOREGSEL, IOWIN, EOI = 0x00, 0x10, 0x40


class Bus:
    """The APIC bus: every message the I/O APIC sends."""

    def __init__(self):
        self.messages: list[tuple[int, bool, int, int, bool]] = []

    def __call__(self, *message) -> None:
        self.messages.append(message)


@pytest.fixture
def bus() -> Bus:
    return Bus()


@pytest.fixture
def ioapic(bus) -> IoApic:
    return IoApic(bus, Pic8259Pair())


def reg(ioapic: IoApic, index: int, value: int | None = None) -> int:
    ioapic.write(IOREGSEL, 4, index)
    if value is not None:
        ioapic.write(IOWIN, 4, value)
    return ioapic.read(IOWIN, 4)


def route(ioapic: IoApic, pin: int, low: int, high: int = 0) -> None:
    reg(ioapic, 0x10 + 2 * pin + 1, high)
    reg(ioapic, 0x10 + 2 * pin, low)


def test_identification_registers(ioapic):
    assert (reg(ioapic, 0), reg(ioapic, 1), reg(ioapic, 2)) == (0, 0x00170020, 0)
    assert reg(ioapic, 0, 0xFFFFFFFF) == 0x0F000000
    assert reg(ioapic, 2) == 0x0F000000  # arbitration shows the ID
    assert reg(ioapic, 1, 0) == 0x00170020


def test_entries_reset_masked_and_keep_all_but_the_read_only_bits(ioapic):
    assert all(reg(ioapic, 0x10 + 2 * pin) == 0x10000 for pin in range(24))
    assert reg(ioapic, 0x10 + 2 * 5, 0xFFFFFFFF) == 0xFFFFAFFF
    assert reg(ioapic, 0x10 + 2 * 5 + 1, 0xFFFFFFFF) == 0xFFFFFFFF
    assert reg(ioapic, 0x10 + 2 * 24) == 0  # past the 24 entries


def test_ioregsel_keeps_a_byte_and_narrow_window_reads_are_zero(ioapic):
    ioapic.write(IOREGSEL, 4, 0x1234567F)
    assert ioapic.read(IOREGSEL, 4) == 0x7F
    ioapic.write(IOREGSEL, 4, 1)
    assert ioapic.read(IOWIN, 2) == 0


def test_isa_irq0_arrives_on_input_2(ioapic, bus):
    route(ioapic, 2, 0x30, 0x00 << 24)
    route(ioapic, 0, 0x31)
    ioapic.set_line(0, True)
    ioapic.set_line(0, False)
    assert bus.messages == [(0, False, 0, 0x30, False)]


def test_masked_edges_are_lost(ioapic, bus):
    route(ioapic, 4, 0x10024)
    ioapic.set_line(4, True)
    route(ioapic, 4, 0x24)
    assert bus.messages == []


def test_every_rising_request_delivers_an_edge_entry(ioapic, bus):
    route(ioapic, 14, 0x2E | 0x800, 0x01 << 24)  # logical destination 1
    for _ in range(2):
        ioapic.set_line(14, True)
    assert bus.messages == [(1, True, 0, 0x2E, False)] * 2


def test_level_entry_waits_for_eoi_and_redelivers_while_high(ioapic, bus):
    route(ioapic, 9, 0x8039)
    ioapic.set_line(9, True)
    ioapic.set_line(9, True)
    assert len(bus.messages) == 1 and reg(ioapic, 0x10 + 18) & 0x4000  # remote IRR
    ioapic.eoi(0x39)
    assert len(bus.messages) == 2  # still high: again
    ioapic.set_line(9, False)
    ioapic.write(EOI, 4, 0x39)  # the version 0x20 EOI register
    assert len(bus.messages) == 2 and not reg(ioapic, 0x10 + 18) & 0x4000


def test_delivery_modes_pass_through(ioapic, bus):
    route(ioapic, 3, 0x400)  # NMI
    route(ioapic, 5, 0x1A5)  # lowest priority, vector 0xA5
    ioapic.set_line(3, True)
    ioapic.set_line(5, True)
    assert [(mode, vector) for _, _, mode, vector, _ in bus.messages] == [(4, 0), (1, 0xA5)]
