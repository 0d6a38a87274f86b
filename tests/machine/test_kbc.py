"""machine/kbc.py and ps2kbd.py: the 8042 and its keyboard, command by command (IBM PC
AT Technical Reference; every answer here is one cgacon printed from QEMU 7.2, which
tests/e2e/test_cgacon.py compares whole), IRQ 1 as a level, the reset line, and the
typing on the virtual clock."""

import pytest

from pvtool.machine.kbc import Kbc8042
from pvtool.machine.ports import PortBus
from pvtool.machine.ps2device import QUEUE_SIZE
from pvtool.machine.ps2kbd import KEY_EVENT_MS, Ps2Keyboard
from pvtool.machine.stop import StopKind

DATA, STATUS = 0x60, 0x64
OBF = 0x01


class Board:
    """An 8042 on a port bus, with its IRQ 1 line and reset line recorded."""

    def __init__(self, typed=()):
        self.irq_levels: list[bool] = []
        self.resets: list[str] = []
        self.keyboard = Ps2Keyboard(list(typed))
        self.kbc = Kbc8042(self.keyboard, self.irq_levels.append, self.resets.append)
        self.ports = PortBus()
        self.kbc.register(self.ports)

    @property
    def irq(self) -> bool:
        return self.irq_levels[-1] if self.irq_levels else False

    def command(self, value: int) -> None:
        self.ports.write(STATUS, 1, value)

    def send(self, value: int) -> None:
        self.ports.write(DATA, 1, value)

    def replies(self) -> list[int]:
        out = []
        while self.ports.read(STATUS, 1) & OBF:
            out.append(self.ports.read(DATA, 1))
        return out


@pytest.fixture
def board():
    return Board()


def test_at_entry_the_status_says_self_tested_and_nothing_waits(board):
    assert board.ports.read(STATUS, 1) == 0x1C


@pytest.mark.parametrize(("command", "reply"), [
    (0x20, [0x61]),  # command byte: IRQ 1, system flag, translation
    (0xAA, [0x55]),  # self test passed
    (0xAB, [0x00]),  # keyboard interface ok
    (0xA9, [0x00]),  # mouse interface ok
    (0xD0, [0xCF]),  # output port: A20 on, not in reset
    (0xC0, [0x80]),  # input port
    (0xA1, []),  # unknown to QEMU: no answer
])
def test_controller_commands_answer_as_qemus(board, command, reply):
    board.command(command)
    assert board.replies() == reply


@pytest.mark.parametrize(("off", "on", "read", "when_off", "when_on"), [
    (0xAD, 0xAE, 0x20, 0x71, 0x61),  # keyboard interface: command byte bit 4
    (0xDD, 0xDF, 0xD0, 0xCD, 0xCF),  # A20: output port bit 1
])
def test_switch_commands_flip_one_bit_that_reads_back(board, off, on, read, when_off,
                                                       when_on):
    board.command(off)
    board.command(read)
    assert board.replies() == [when_off]
    board.command(on)
    board.command(read)
    assert board.replies() == [when_on]


def test_a_byte_written_through_0xd2_comes_back_and_reads_again_when_empty(board):
    board.command(0xD2)
    board.send(0x5A)
    assert board.ports.read(STATUS, 1) == 0x1D
    assert board.replies() == [0x5A]
    assert board.ports.read(DATA, 1) == 0x5A  # the last byte, again


@pytest.mark.parametrize(("sent", "reply"), [
    ([0xF2], [0xFA, 0xAB, 0x41]),  # identify, translated
    ([0xEE], [0xEE]),  # echo
    ([0xFF], [0xFA, 0xAA]),  # reset: acknowledged, self test passed
    ([0xED, 0x07], [0xFA, 0xFA]),  # LEDs, with their argument
    ([0xF0, 0x00], [0xFA, 0xFA, 0x41]),  # which scan code set: 2, translated
    ([0x01], [0xFE]),  # unknown: resend
])
def test_keyboard_commands_answer_as_qemus(board, sent, reply):
    for value in sent:
        board.send(value)
    assert board.replies() == reply


def test_a_byte_for_the_keyboard_enables_its_interface_again(board):
    board.command(0xAD)
    board.send(0xEE)
    assert board.replies() == [0xEE]
    board.command(0x20)
    assert board.replies() == [0x61]


def test_irq_1_is_high_while_a_keyboard_byte_waits_and_the_command_byte_allows_it(board):
    board.send(0xEE)
    assert board.irq
    board.replies()
    assert not board.irq
    board.command(0x60)
    board.send(0x60)  # IRQ 1 off, translation on
    board.send(0xEE)
    assert not board.irq


def test_pulsing_output_port_bit_0_resets_the_machine(board):
    board.command(0xFF)  # pulses nothing
    board.command(0xF1)  # pulses bits 1-3, not the reset line
    assert board.resets == []
    board.command(0xFE)
    assert len(board.resets) == 1


def test_writing_the_output_port_with_bit_0_clear_resets_the_machine(board):
    board.command(0xD1)
    board.send(0xCF)
    assert board.resets == []
    board.command(0xD1)
    board.send(0xCE)
    assert len(board.resets) == 1


def test_typed_codes_arrive_one_per_key_event_with_irq_1():
    board = Board(typed=[0x1E, 0x9E])
    keyboard = board.keyboard
    assert keyboard.ticks_to_next_irq() == KEY_EVENT_MS
    keyboard.advance(KEY_EVENT_MS - 1)
    assert board.replies() == []
    keyboard.advance(1)
    assert board.irq_levels[-1]
    assert board.replies() == [0x1E]
    keyboard.advance(KEY_EVENT_MS)
    assert board.replies() == [0x9E]
    assert keyboard.ticks_to_next_irq() is None


def test_a_keyboard_with_scanning_disabled_drops_what_is_typed():
    board = Board(typed=[0x1E])
    board.send(0xF5)
    board.replies()
    board.keyboard.advance(KEY_EVENT_MS)
    assert board.replies() == []


def test_bytes_beyond_the_queue_are_lost():
    board = Board(typed=[0x1E] * (QUEUE_SIZE + 3))
    board.keyboard.advance(KEY_EVENT_MS * (QUEUE_SIZE + 3))
    assert len(board.replies()) == QUEUE_SIZE


RESET_SCENARIO = """
    .globl test_main
test_main:
    mov $'r', %al
    mov $0x3f8, %dx
    out %al, %dx
    mov $0xfe, %al              # pulse the reset line
    out %al, $0x64
1:  jmp 1b                      # as kernels wait for the reset (QEMU would run on
                                # to the end of a translation block: kbc.py)
"""


def test_a_guest_that_pulses_reset_ends_the_run_as_qemu_no_reboot_does(build):
    from tests import cli
    from tests.machine.harness import qemu, run_native

    guest = build(RESET_SCENARIO)
    run = run_native(guest)
    judge = qemu(guest)
    done = cli.pvtool("run", "--native", "--quiet", str(guest.elf), process=True)

    assert run.stop.kind is StopKind.RESET
    assert bytes(run.output) == judge.stdout == done.stdout_bytes == b"r"
    assert (judge.status, judge.guest_code) == (0, None)
    assert done.status == judge.status
