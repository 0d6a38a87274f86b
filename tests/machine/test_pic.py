"""The 8259A pair driven through its ports as kernels drive it (Linux's init_8259A,
xv6's picinit), against the Intel 8259A datasheet."""

import pytest

from pvtool.machine.pic import Pic8259Pair
from pvtool.machine.ports import PortBus

MASTER_CMD, MASTER_DATA, SLAVE_CMD, SLAVE_DATA = 0x20, 0x21, 0xA0, 0xA1
EOI, READ_IRR, READ_ISR = 0x20, 0x0A, 0x0B


class Board:
    """The pair on a port bus, with outb/inb as a kernel uses them."""

    def __init__(self):
        self.pic = Pic8259Pair()
        self.bus = PortBus()
        self.bus.register(self.pic.master, 0x20, 2)
        self.bus.register(self.pic.slave, 0xA0, 2)

    def outb(self, port: int, value: int) -> None:
        self.bus.write(port, 1, value)

    def inb(self, port: int) -> int:
        return self.bus.read(port, 1)

    def init(self, master_icw4: int = 0x01, slave_icw4: int = 0x01, icw1: int = 0x11,
             base: int = 0x20) -> None:
        """ICW1-ICW4 on both chips, slave on master IR2 (Linux's and xv6's order)."""
        self.outb(MASTER_DATA, 0xFF)
        self.outb(SLAVE_DATA, 0xFF)
        for cmd, data, vector, icw3, icw4 in (
            (MASTER_CMD, MASTER_DATA, base, 0x04, master_icw4),
            (SLAVE_CMD, SLAVE_DATA, base + 8, 0x02, slave_icw4),
        ):
            self.outb(cmd, icw1)
            self.outb(data, vector)
            self.outb(data, icw3)
            self.outb(data, icw4)

    def pulse(self, irq: int) -> None:
        self.pic.set_line(irq, True)
        self.pic.set_line(irq, False)

    def take(self) -> int:
        assert self.pic.pending()
        return self.pic.acknowledge()

    def isr(self, cmd: int) -> int:
        self.outb(cmd, READ_ISR)
        value = self.inb(cmd)
        self.outb(cmd, READ_IRR)
        return value


@pytest.fixture
def board() -> Board:
    board = Board()
    board.init()
    return board


# ---- initialisation and masks ---------------------------------------------------------

def test_icw_sequence_leaves_all_lines_unmasked_and_sets_vector_bases(board):
    assert board.inb(MASTER_DATA) == 0 and board.inb(SLAVE_DATA) == 0
    assert board.pic.master.vector_base == 0x20 and board.pic.slave.vector_base == 0x28
    assert not board.pic.pending()


def test_icw1_clears_mask_requests_and_in_service_bits(board):
    board.pulse(0)
    board.pulse(3)
    board.take()
    board.outb(MASTER_DATA, 0x5A)
    board.init()
    assert (board.pic.master.irr, board.pic.master.isr, board.pic.master.imr) == (0, 0, 0)


def test_vector_base_ignores_the_low_three_bits_of_icw2():
    board = Board()
    board.init(base=0x37)
    board.pulse(1)
    assert board.take() == 0x31


def test_mask_register_reads_back_and_masks_a_line(board):
    board.outb(MASTER_DATA, 0xFB)
    board.outb(SLAVE_DATA, 0xBF)
    assert board.inb(MASTER_DATA) == 0xFB and board.inb(SLAVE_DATA) == 0xBF
    board.pulse(0)
    assert not board.pic.pending()
    board.outb(MASTER_DATA, 0xFA)  # the request was latched in IRR while masked
    assert board.take() == 0x20


def test_irr_and_isr_are_read_as_ocw3_selects(board):
    board.outb(MASTER_DATA, 0x02)
    board.pulse(1)
    board.pulse(4)
    assert board.inb(MASTER_CMD) == 0x12  # IRR after ICW1
    board.take()
    board.outb(MASTER_CMD, READ_ISR)
    assert board.inb(MASTER_CMD) == 0x10
    assert board.inb(MASTER_CMD) == 0x10  # the selection sticks
    board.outb(MASTER_CMD, READ_IRR)
    assert board.inb(MASTER_CMD) == 0x02


def test_picinit_of_minikern_reads_back_its_masks(board):
    board.outb(MASTER_DATA, 0xFB)
    board.outb(SLAVE_DATA, 0xFF)
    assert (board.inb(MASTER_DATA), board.inb(SLAVE_DATA)) == (0xFB, 0xFF)


# ---- the INTA cycle, priorities and EOI --------------------------------------------------

def test_acknowledge_moves_the_request_from_irr_to_isr(board):
    board.pulse(0)
    assert board.take() == 0x20
    assert board.pic.master.irr == 0 and board.pic.master.isr == 0x01
    assert not board.pic.pending()  # IRQ0 is in service
    board.outb(MASTER_CMD, EOI)
    assert board.pic.master.isr == 0


def test_lower_numbered_line_wins(board):
    board.pulse(3)
    board.pulse(1)
    assert board.take() == 0x21
    board.outb(MASTER_CMD, EOI)
    assert board.take() == 0x23


def test_higher_priority_nests_and_eoi_ends_the_innermost_first(board):
    board.pulse(3)
    assert board.take() == 0x23
    board.pulse(5)
    assert not board.pic.pending()  # lower than the level in service
    board.pulse(1)
    assert board.take() == 0x21  # higher: nests
    assert board.isr(MASTER_CMD) == 0x0A
    board.outb(MASTER_CMD, EOI)  # non-specific: ends IRQ1, the highest in service
    assert board.isr(MASTER_CMD) == 0x08
    assert not board.pic.pending()
    board.outb(MASTER_CMD, EOI)
    assert board.take() == 0x25


def test_specific_eoi_ends_the_named_level(board):
    board.pulse(3)
    board.take()
    board.pulse(1)
    board.take()
    board.outb(MASTER_CMD, 0x63)  # specific EOI, level 3
    assert board.isr(MASTER_CMD) == 0x02


def test_same_line_waits_for_its_own_eoi(board):
    board.pulse(0)
    board.take()
    board.pulse(0)
    assert not board.pic.pending()
    board.outb(MASTER_CMD, EOI)
    assert board.take() == 0x20


# ---- edges ------------------------------------------------------------------------------

def test_only_a_rising_edge_requests(board):
    board.pic.set_line(4, True)
    board.take()
    board.outb(MASTER_CMD, EOI)
    board.pic.set_line(4, True)  # still high: no new edge
    assert not board.pic.pending()
    board.pic.set_line(4, False)
    board.pic.set_line(4, True)
    assert board.take() == 0x24


def test_a_pulse_stays_latched_until_acknowledged(board):
    board.pulse(6)
    board.pulse(6)  # a second edge before INTA is the same request
    assert board.take() == 0x26
    board.outb(MASTER_CMD, EOI)
    assert not board.pic.pending()


def test_level_triggered_mode_follows_the_line():
    board = Board()
    board.init(icw1=0x19)
    board.pic.set_line(3, True)
    board.pic.set_line(3, False)
    assert not board.pic.pending()
    board.pic.set_line(3, True)
    assert board.take() == 0x23
    board.outb(MASTER_CMD, EOI)
    assert board.take() == 0x23  # still high after EOI: requests again


# ---- the cascade ------------------------------------------------------------------------

def test_slave_irq_is_delivered_through_master_ir2(board):
    board.pulse(14)
    assert board.take() == 0x2E
    assert board.pic.master.isr == 0x04 and board.pic.slave.isr == 0x40
    board.outb(SLAVE_CMD, EOI)
    board.outb(MASTER_CMD, EOI)
    assert board.pic.master.isr == 0 and board.pic.slave.isr == 0


def test_slave_lines_nest_only_after_both_eois(board):
    board.pulse(14)
    board.take()
    board.pulse(15)
    assert not board.pic.pending()
    board.outb(SLAVE_CMD, EOI)
    assert not board.pic.pending()  # IR2 is still in service on the master
    board.outb(MASTER_CMD, EOI)
    assert board.take() == 0x2F


def test_master_lines_above_ir2_preempt_a_slave_irq(board):
    board.pulse(12)
    board.take()
    board.pulse(3)
    assert not board.pic.pending()  # IR3 is below IR2
    board.pulse(1)
    assert board.take() == 0x21


def test_masked_cascade_line_blocks_the_slave(board):
    board.outb(MASTER_DATA, 0x04)
    board.pulse(9)
    assert not board.pic.pending()
    board.outb(MASTER_DATA, 0x00)
    assert board.take() == 0x29


def test_slave_mask_holds_its_request(board):
    board.outb(SLAVE_DATA, 0x01)
    board.pulse(8)
    assert not board.pic.pending()
    board.outb(SLAVE_DATA, 0x00)
    assert board.take() == 0x28


def test_single_mode_makes_ir2_an_ordinary_line():
    board = Board()
    board.outb(MASTER_CMD, 0x13)  # ICW1: single, ICW4 follows (no ICW3)
    board.outb(MASTER_DATA, 0x40)
    board.outb(MASTER_DATA, 0x01)
    board.pulse(2)
    assert board.take() == 0x42
    board.pulse(10)
    assert board.pic.slave.irr == 0x04 and not board.pic.master.is_cascade(2)


# ---- spurious interrupts ----------------------------------------------------------------

def test_inta_without_request_gives_spurious_irq7(board):
    assert board.pic.acknowledge() == 0x27
    assert board.pic.master.isr == 0


def test_request_masked_before_inta_gives_spurious_irq7(board):
    board.pulse(5)
    assert board.pic.pending()
    board.outb(MASTER_DATA, 0x20)
    assert board.pic.acknowledge() == 0x27
    assert board.isr(MASTER_CMD) & 0x80 == 0  # how a kernel tells it was spurious


def test_slave_request_gone_before_inta_gives_spurious_irq15(board):
    board.pulse(11)
    board.pic.slave.imr = 0x08  # masked between INTR and INTA (as by a racing CPU)
    assert board.pic.acknowledge() == 0x2F
    assert board.isr(SLAVE_CMD) == 0
    assert board.isr(MASTER_CMD) == 0x04  # the master's IR2 needs its EOI


# ---- modes ------------------------------------------------------------------------------

def test_auto_eoi_leaves_nothing_in_service():
    board = Board()
    board.init(master_icw4=0x03, slave_icw4=0x03)  # xv6's picinit
    board.pulse(3)
    assert board.take() == 0x23
    board.pulse(5)
    assert board.take() == 0x25
    board.pulse(14)
    assert board.take() == 0x2E
    assert board.pic.master.isr == 0 and board.pic.slave.isr == 0


def test_xv6_ocw3_sets_special_mask_mode_harmlessly():
    board = Board()
    board.init(master_icw4=0x03, slave_icw4=0x03)
    for cmd in (MASTER_CMD, SLAVE_CMD):
        board.outb(cmd, 0x68)
        board.outb(cmd, 0x0A)
    assert board.pic.master.special_mask
    board.pulse(0)
    assert board.take() == 0x20


def test_special_mask_mode_lets_lower_levels_through_a_masked_one(board):
    board.pulse(1)
    board.take()
    board.pulse(5)
    assert not board.pic.pending()
    board.outb(MASTER_DATA, 0x02)
    board.outb(MASTER_CMD, 0x68)  # set special mask mode
    assert board.take() == 0x25
    board.outb(MASTER_CMD, 0x48)  # reset special mask mode
    assert not board.pic.master.special_mask


def test_rotate_on_nonspecific_eoi_makes_the_served_level_lowest(board):
    board.pulse(0)
    board.take()
    board.outb(MASTER_CMD, 0xA0)
    board.pulse(0)
    board.pulse(5)
    assert board.take() == 0x25


def test_set_priority_command(board):
    board.outb(MASTER_CMD, 0xC4)  # IR4 lowest, so IR5 highest
    board.pulse(1)
    board.pulse(6)
    assert board.take() == 0x26


def test_rotate_in_auto_eoi_mode():
    board = Board()
    board.init(master_icw4=0x03)
    board.outb(MASTER_CMD, 0x80)
    board.pulse(1)
    board.take()
    board.pulse(1)
    board.pulse(3)
    assert board.take() == 0x23


def test_poll_command_reads_and_acknowledges_the_highest_request(board):
    board.pulse(6)
    board.outb(MASTER_CMD, 0x0C)
    assert board.inb(MASTER_CMD) == 0x86
    assert board.pic.master.isr == 0x40
    board.outb(MASTER_CMD, 0x0C)
    assert board.inb(MASTER_CMD) == 0x00  # bit 7 clear: nothing to report


def test_special_fully_nested_mode_lets_the_slave_nest():
    board = Board()
    board.init(master_icw4=0x11)
    board.pulse(14)
    board.take()
    board.outb(SLAVE_CMD, EOI)
    board.pulse(13)
    assert board.take() == 0x2D  # IR2 in service does not block its own slave


def test_irq_numbers_beyond_15_are_refused(board):
    with pytest.raises(ValueError):
        board.pic.set_line(16, True)
