"""The local APIC (machine/lapic.py): registers as QEMU 7.2 shows them after SeaBIOS
(measured with guests/apicprobe; the e2e test compares the guest's dump with QEMU's),
priorities, EOI, IPIs to itself and the timer on bus-clock ticks."""

import pytest

from pvtool.machine.lapic import LocalApic
from pvtool.machine.pic import Pic8259Pair
from tests.machine.test_irq import initialized_pic

EOI, TPR, PPR, SVR, ESR, ICR_LOW, ICR_HIGH = 0xB0, 0x80, 0xA0, 0xF0, 0x280, 0x300, 0x310
ISR, TMR, IRR = 0x100, 0x180, 0x200
LVT_TIMER, LVT_LINT0, LVT_LINT1 = 0x320, 0x350, 0x360
INITIAL, CURRENT, DIVIDE = 0x380, 0x390, 0x3E0
SELF_FIXED, SELF_NMI = 0x40000, 0x40400


class Wires:
    def __init__(self):
        self.eois: list[int] = []
        self.nmis = 0
        self.signals = 0


@pytest.fixture
def wires() -> Wires:
    return Wires()


@pytest.fixture
def apic(wires) -> LocalApic:
    def nmi():
        wires.nmis += 1

    def signal():
        wires.signals += 1

    return LocalApic(Pic8259Pair(), eoi_broadcast=wires.eois.append, raise_nmi=nmi,
                     signal=signal)


def vector_bit(apic: LocalApic, base: int, vector: int) -> bool:
    return bool(apic.read(base + 0x10 * (vector // 32), 4) >> (vector % 32) & 1)


def test_state_as_seabios_leaves_it(apic):
    assert apic.read(0x20, 4) == 0 and apic.read(0x30, 4) == 0x00050014
    assert apic.read(SVR, 4) == 0x1FF and apic.software_enabled
    assert (apic.read(LVT_LINT0, 4), apic.read(LVT_LINT1, 4)) == (0x8700, 0x8400)
    assert apic.read(ICR_LOW, 4) == 0xC4610 and apic.read(0xE0, 4) == 0xFFFFFFFF
    for lvt in (LVT_TIMER, 0x330, 0x340, 0x370):
        assert apic.read(lvt, 4) == 0x10000, hex(lvt)


def test_writable_bits_as_qemu_keeps_them(apic):
    for offset in (0x20, 0x30, TPR, PPR, 0xD0, 0xE0, SVR, ESR, ICR_HIGH, INITIAL, DIVIDE,
                   *range(0x320, 0x380, 0x10)):
        apic.write(offset, 4, 0xFFFFFFFF)
    got = {offset: apic.read(offset, 4) for offset in (0x20, TPR, PPR, 0xD0, SVR, ESR,
                                                        ICR_HIGH, LVT_TIMER, DIVIDE)}
    assert got == {0x20: 0xFF000000, TPR: 0xFF, PPR: 0xFF, 0xD0: 0xFF000000, SVR: 0x1FF,
                   ESR: 0, ICR_HIGH: 0xFFFFFFFF, LVT_TIMER: 0xFFFFFFFF, DIVIDE: 0xB}
    apic.write(0xE0, 4, 0)
    assert apic.read(0xE0, 4) == 0x0FFFFFFF  # cluster model, the rest reads ones


def test_narrow_accesses_read_zero_and_write_nothing(apic):
    assert apic.read(0x30, 1) == apic.read(0x30, 2) == 0
    apic.write(TPR, 1, 0x20)
    assert apic.read(TPR, 4) == 0


def test_esr_records_an_illegal_register_and_writes_do_not_clear_it(apic):
    assert apic.read(ESR, 4) == 0
    apic.read(0x40, 4)
    assert apic.read(ESR, 4) == 0x80
    apic.write(ESR, 4, 0)
    assert apic.read(ESR, 4) == 0x80


def test_self_ipi_goes_through_irr_isr_and_eoi(apic, wires):
    apic.write(ICR_LOW, 4, SELF_FIXED | 0x41)
    assert vector_bit(apic, IRR, 0x41) and apic.pending() and wires.signals == 1
    assert apic.acknowledge() == 0x41
    assert vector_bit(apic, ISR, 0x41) and not vector_bit(apic, IRR, 0x41)
    assert apic.read(PPR, 4) == 0x40 and not apic.pending()
    apic.write(EOI, 4, 0)
    assert apic.read(PPR, 4) == 0 and not vector_bit(apic, ISR, 0x41)
    assert wires.eois == []  # edge-triggered: nothing broadcast


def test_destination_own_id_physical_and_absent_cpus(apic):
    apic.write(ICR_HIGH, 4, 1 << 24)
    apic.write(ICR_LOW, 4, 0x50)  # to APIC 1: nobody
    apic.write(ICR_LOW, 4, 0x4500)  # INIT to APIC 1
    apic.write(ICR_LOW, 4, 0xC4600)  # SIPI to all but self
    assert not apic.pending() and apic.read(ICR_LOW, 4) == 0xC4600
    apic.write(ICR_HIGH, 4, 0)
    apic.write(ICR_LOW, 4, 0x50)
    assert apic.acknowledge() == 0x50


def test_tpr_holds_back_a_class_and_lowering_it_lets_it_through(apic):
    apic.write(TPR, 4, 0x50)
    apic.write(ICR_LOW, 4, SELF_FIXED | 0x45)
    assert not apic.pending() and apic.read(PPR, 4) == 0x50
    apic.write(TPR, 4, 0x40)
    assert not apic.pending()
    apic.write(TPR, 4, 0x3F)
    assert apic.pending() and apic.acknowledge() == 0x45


def test_higher_class_nests_and_eoi_clears_the_highest(apic):
    apic.write(ICR_LOW, 4, SELF_FIXED | 0x52)
    assert apic.acknowledge() == 0x52
    apic.write(ICR_LOW, 4, SELF_FIXED | 0x71)
    apic.write(ICR_LOW, 4, SELF_FIXED | 0x53)  # same class as in service: waits
    assert apic.acknowledge() == 0x71
    assert apic.read(PPR, 4) == 0x70
    apic.write(EOI, 4, 0)
    assert apic.read(PPR, 4) == 0x50 and not apic.pending()
    apic.write(EOI, 4, 0)
    assert apic.acknowledge() == 0x53


def test_software_disabled_apic_holds_its_requests(apic):
    apic.write(SVR, 4, 0xFF)
    apic.write(ICR_LOW, 4, SELF_FIXED | 0x60)
    assert not apic.pending()
    apic.write(SVR, 4, 0x1FF)
    assert apic.acknowledge() == 0x60


def test_level_triggered_vector_is_broadcast_at_eoi(apic, wires):
    apic.message(0, False, 0, 0x33, True)
    assert vector_bit(apic, TMR, 0x33) and apic.acknowledge() == 0x33
    apic.write(EOI, 4, 0)
    assert wires.eois == [0x33]


def test_nmi_by_ipi_and_by_lint1(apic, wires):
    apic.write(ICR_LOW, 4, SELF_NMI)
    apic.lint1_nmi()  # LINT1 programmed NMI by SeaBIOS
    apic.write(LVT_LINT1, 4, 0x10400)
    apic.lint1_nmi()  # masked
    assert wires.nmis == 2 and not apic.pending()


def test_lint0_virtual_wire_passes_the_8259_and_masking_it_stops_it():
    pic, _ = initialized_pic()
    apic = LocalApic(pic)
    pic.set_line(0, True)
    assert apic.pending()
    apic.write(LVT_LINT0, 4, 0x18700)
    assert not apic.pending()
    apic.write(LVT_LINT0, 4, 0x700)
    assert apic.acknowledge() == 0x20


def start_timer(apic: LocalApic, divide: int, lvt: int, initial: int) -> None:
    apic.write(DIVIDE, 4, divide)
    apic.write(LVT_TIMER, 4, lvt)
    apic.write(INITIAL, 4, initial)


def test_one_shot_timer_fires_once_after_initial_plus_one_ticks(apic):
    start_timer(apic, 0xB, 0x30, 1000)  # divide by 1
    assert apic.ticks_to_next_irq() == 1001
    apic.advance(400)
    assert apic.read(CURRENT, 4) == 600 and not apic.pending()
    apic.advance(601)
    assert apic.read(CURRENT, 4) == 0 and apic.acknowledge() == 0x30
    assert apic.ticks_to_next_irq() is None


def test_periodic_timer_reloads_and_divides_its_clock(apic):
    start_timer(apic, 0x0, 0x20031, 99)  # divide by 2
    assert apic.ticks_to_next_irq() == 200
    apic.advance(200)
    assert apic.acknowledge() == 0x31 and apic.read(CURRENT, 4) == 99
    apic.advance(50)
    assert apic.read(CURRENT, 4) == 74 and apic.ticks_to_next_irq() == 150


def test_masked_timer_counts_but_never_fires(apic):
    start_timer(apic, 0xB, 0x10000, 10)  # masked
    assert apic.ticks_to_next_irq() is None
    apic.advance(20)
    assert apic.read(CURRENT, 4) == 0 and not apic.pending()
