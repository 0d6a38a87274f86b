"""Ports 0x61, 0x92 and 0xCF9 (machine/system_ports.py), with the values pcprobe
measured on QEMU 7.2 (tests/e2e/test_pcprobe.py runs the probe on both)."""

from pvtool.machine.pit import Pit8254
from pvtool.machine.system_ports import PortA, PortB, ResetControl


def test_port_b_refresh_bit_flips_on_every_read():
    port = PortB(Pit8254(lambda: None))
    reads = [port.read(0, 1) & 0x10 for _ in range(4)]
    assert reads == [0x10, 0, 0x10, 0]


def test_port_b_gates_channel_2_and_shows_out2():
    pit = Pit8254(lambda: None)
    port = PortB(pit)
    assert not pit.channels[2].gate  # QEMU resets the gate low
    port.write(0, 1, 0xFF)
    assert port.read(0, 1) & ~0x10 == 0x23  # gate, speaker, OUT2 (mode 3, first half)
    port.write(0, 1, 0x01)
    pit.write(3, 1, 0xB0)  # channel 2, mode 0, count 100
    pit.write(2, 1, 100)
    pit.write(2, 1, 0)
    assert port.read(0, 1) & 0x20 == 0
    pit.advance(100)
    assert port.read(0, 1) & 0x20 == 0x20


def test_port_a_keeps_what_is_written_and_resets_on_a_rising_bit_0():
    resets = []
    port = PortA(resets.append)
    assert port.read(0, 1) == 0x02  # A20 on
    port.write(0, 1, 0xFE)
    assert port.read(0, 1) == 0xFE and resets == []
    port.write(0, 1, 0x03)
    assert len(resets) == 1
    port.write(0, 1, 0x03)
    assert len(resets) == 1  # no new edge


def test_reset_control_resets_on_rst_cpu():
    resets = []
    register = ResetControl(resets.append)
    register.write(0, 1, 0x02)
    assert register.read(0, 1) == 0x02 and resets == []
    register.write(0, 1, 0x06)
    assert len(resets) == 1


def test_a_reset_through_either_port_stops_the_pc():
    from pvtool.machine.pc import Machine
    from pvtool.machine.stop import StopKind

    for port, value in ((0x92, 0x03), (0xCF9, 0x06)):
        machine = Machine(ram_size=16 << 20, output=lambda data: None)
        machine.ports.write(port, 1, value)
        assert machine.stop.kind is StopKind.RESET and machine.stop.guest_chose
