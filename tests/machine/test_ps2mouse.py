"""machine/ps2mouse.py and the 8042's auxiliary port (kbc.py): the mouse's commands
as QEMU 7.2 answers them (guests/portscan prints them from QEMU, and
tests/e2e/test_portscan.py compares them whole), status bit 5 and IRQ 12."""

import pytest

from pvtool.machine.kbc import Kbc8042
from pvtool.machine.ports import PortBus
from pvtool.machine.ps2kbd import Ps2Keyboard
from pvtool.machine.ps2mouse import Ps2Mouse

DATA, STATUS = 0x60, 0x64
OBF, AUX = 0x01, 0x20
ACK = 0xFA


class Board:
    """An 8042 on a port bus with a mouse, its IRQ 12 line recorded."""

    def __init__(self):
        self.mouse_irq: list[bool] = []
        self.kbc = Kbc8042(Ps2Keyboard(), lambda level: None, lambda why: None,
                           set_mouse_irq=self.mouse_irq.append)
        self.ports = PortBus()
        self.kbc.register(self.ports)
        self.command(0xA8)  # enable the auxiliary interface
        self.command(0x60)
        self.ports.write(DATA, 1, 0x43)  # and its interrupt

    def command(self, value: int) -> None:
        self.ports.write(STATUS, 1, value)

    def mouse(self, *values: int) -> list[tuple[int, int]]:
        """Send VALUES to the mouse; what came back, each byte with its status."""
        for value in values:
            self.command(0xD4)
            self.ports.write(DATA, 1, value)
        out = []
        while (status := self.ports.read(STATUS, 1)) & OBF:
            out.append((self.ports.read(DATA, 1), status & AUX))
        return out


@pytest.fixture
def board():
    return Board()


def bytes_of(replies):
    return [value for value, _ in replies]


def test_mouse_bytes_come_with_the_aux_status_bit_and_raise_irq_12(board):
    assert board.mouse(0xF2) == [(ACK, AUX), (0x00, AUX)]
    assert board.mouse_irq[-2:] == [True, False]  # high while a byte waited


@pytest.mark.parametrize("sent, reply", [
    ((0xFF,), [ACK, 0xAA, 0x00]),
    ((0xE9,), [ACK, 0x00, 0x02, 100]),
    ((0xE8, 3, 0xE7, 0xF4, 0xF0, 0xE9), [ACK] * 5 + [ACK, 0x70, 3, 100]),
    ((0xEB,), [ACK, 0x08, 0, 0]),
    ((0xEE, 0x5A, 0xEC), [ACK, 0x5A, ACK]),
    ((0x01,), []),
])
def test_commands_answer_as_qemus(board, sent, reply):
    assert bytes_of(board.mouse(*sent)) == reply


@pytest.mark.parametrize("rates, kind", [((200, 100, 80), 3), ((200, 200, 80), 4),
                                         ((200, 200, 100, 80), 0)])
def test_the_sample_rate_knock_turns_it_into_a_wheel_mouse(board, rates, kind):
    for rate in rates:
        board.mouse(0xF3, rate)
    assert bytes_of(board.mouse(0xF2)) == [ACK, kind]
    assert bytes_of(board.mouse(0xEB))[1:] == [0x08, 0, 0] + [0] * (kind != 0)


def test_a_disabled_interface_holds_the_mouse_bytes_but_not_a_0xd3_byte(board):
    mouse = board.kbc.mouse
    mouse.queue(0x11)
    board.command(0xA7)
    assert board.ports.read(STATUS, 1) & OBF == 0
    board.command(0xD3)
    board.ports.write(DATA, 1, 0x77)
    assert board.ports.read(STATUS, 1) & (OBF | AUX) == OBF | AUX
    assert board.ports.read(DATA, 1) == 0x77
    board.command(0xA8)
    assert board.ports.read(DATA, 1) == 0x11


def test_sending_to_the_mouse_enables_its_interface_again(board):
    board.command(0xA7)
    assert bytes_of(board.mouse(0xF2)) == [ACK, 0x00]


def test_reset_sets_the_defaults_and_drops_what_waited():
    mouse = Ps2Mouse()
    mouse.command(0xF3)
    mouse.command(10)
    mouse.queue(0x99)
    mouse.command(0xFF)
    assert list(mouse.queue_bytes) == [ACK, 0xAA, 0x00]
    assert (mouse.rate, mouse.resolution, mouse.status) == (100, 2, 0)
