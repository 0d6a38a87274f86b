"""The PC's interrupt wiring (machine/irq.py): lines fan out to every controller, the
CPU asks them in order, and the 8259 pair behind it acts as its datasheet says."""

from pvtool.machine.irq import IrqRouter
from pvtool.machine.pic import Pic8259Pair
from pvtool.machine.ports import PortBus


class Recorder:
    """A controller that records its lines and hands out one vector when asked."""

    def __init__(self, vector: int | None = None):
        self.lines: list[tuple[int, bool]] = []
        self.vector = vector
        self.acknowledged = 0

    def set_line(self, line: int, level: bool) -> None:
        self.lines.append((line, level))

    def pending(self) -> bool:
        return self.vector is not None

    def acknowledge(self) -> int:
        self.acknowledged += 1
        return self.vector if self.vector is not None else 0xFF


def initialized_pic() -> tuple[Pic8259Pair, PortBus]:
    """The pair as a PC BIOS leaves it: vectors 0x20 and 0x28, nothing masked."""
    pic, bus = Pic8259Pair(), PortBus()
    bus.register(pic.master, 0x20, 2)
    bus.register(pic.slave, 0xA0, 2)
    for port, words in ((0x20, (0x11, 0x20, 0x04, 0x01)), (0xA0, (0x11, 0x28, 0x02, 0x01))):
        bus.write(port, 1, words[0])
        for word in words[1:]:
            bus.write(port + 1, 1, word)
    return pic, bus


def test_a_pulse_reaches_every_controller_as_an_edge():
    first, second = Recorder(), Recorder()
    IrqRouter(first, second).pulse(14)
    assert first.lines == second.lines == [(14, True), (14, False)]


def test_the_first_controller_with_an_interrupt_answers_inta():
    quiet, busy, later = Recorder(), Recorder(0x41), Recorder(0x30)
    router = IrqRouter(quiet, busy, later)
    assert router.pending()
    assert router.acknowledge() == 0x41
    assert (quiet.acknowledged, busy.acknowledged, later.acknowledged) == (0, 1, 0)


def test_no_request_left_at_inta_gets_the_last_controllers_answer():
    last = Recorder()
    router = IrqRouter(Recorder(), last)
    assert not router.pending()
    assert router.acknowledge() == 0xFF and last.acknowledged == 1


def test_the_pit_line_through_the_router_gives_the_8259s_vector():
    pic, bus = initialized_pic()
    router = IrqRouter(pic)
    router.pulse(0)
    assert router.pending() and router.acknowledge() == 0x20
    router.pulse(14)  # a slave line, below IRQ 0 in service: it waits
    assert not router.pending()
    assert router.acknowledge() == 0x27  # INTA anyway: the master's spurious IR7
    bus.write(0x20, 1, 0x20)  # EOI
    assert router.pending() and router.acknowledge() == 0x28 + 6


def test_the_cpus_intr_pin_asks_only_its_own_controller():
    lines, intr = Recorder(0x99), Recorder(0x41)
    router = IrqRouter(lines, intr=intr)
    router.pulse(3)
    assert lines.lines == [(3, True), (3, False)] and intr.lines == []
    assert router.pending() and router.acknowledge() == 0x41
    assert lines.acknowledged == 0


def test_nmi_is_a_latch_taken_once():
    router = IrqRouter(Recorder())
    assert not router.take_nmi()
    router.raise_nmi()
    router.raise_nmi()
    assert router.take_nmi() and not router.take_nmi()
