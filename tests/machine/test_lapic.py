"""The minimal local APIC's registers, against the Intel SDM's register map and its
state after reset."""

import pytest

from pvtool.machine.lapic import LocalApic


@pytest.fixture
def apic() -> LocalApic:
    return LocalApic()


def test_id_and_version(apic):
    assert apic.read(0x20, 4) == 0
    assert apic.read(0x30, 4) == 0x00050014
    apic.write(0x30, 4, 0)
    assert apic.read(0x30, 4) == 0x00050014  # read-only


def test_reset_state(apic):
    assert apic.read(0xF0, 4) == 0xFF and not apic.software_enabled
    assert apic.read(0xE0, 4) == 0xFFFFFFFF  # flat model
    for lvt in range(0x320, 0x380, 0x10):
        assert apic.read(lvt, 4) == 0x10000, hex(lvt)


def test_task_priority_reads_back_and_is_the_processor_priority(apic):
    apic.write(0x80, 4, 0xFFFFFF20)
    assert apic.read(0x80, 4) == 0x20 and apic.read(0xA0, 4) == 0x20


def test_svr_enables_the_apic(apic):
    apic.write(0xF0, 4, 0x1FF)
    assert apic.software_enabled and apic.read(0xF0, 4) == 0x1FF


def test_eoi_is_accepted_and_reads_zero(apic):
    apic.write(0xB0, 4, 0)
    assert apic.eoi_writes == 1 and apic.read(0xB0, 4) == 0


def test_logical_destination_registers(apic):
    apic.write(0xD0, 4, 0x01FFFFFF)
    apic.write(0xE0, 4, 0x0FFFFFFF)  # cluster model
    assert apic.read(0xD0, 4) == 0x01000000
    assert apic.read(0xE0, 4) == 0x0FFFFFFF


def test_interrupt_state_arrays_read_zero(apic):
    assert all(apic.read(offset, 4) == 0 for offset in range(0x100, 0x280, 0x10))


def test_error_status_register_records_nothing(apic):
    apic.write(0x280, 4, 0)
    assert apic.read(0x280, 4) == 0


def test_icr_is_stored_and_always_idle(apic):
    apic.write(0x310, 4, 0x01000000)
    apic.write(0x300, 4, 0x000C4500 | 0x1000)  # INIT to all but self, delivery bit set
    assert apic.read(0x310, 4) == 0x01000000
    assert apic.read(0x300, 4) == 0x000C4500  # delivery status idle


def test_lvt_entries_take_vector_mode_and_mask(apic):
    apic.write(0x320, 4, 0x20030)  # timer: periodic, vector 0x30, unmasked
    apic.write(0x350, 4, 0x700)  # LINT0: ExtINT, as in virtual wire mode
    apic.write(0x360, 4, 0x4400)  # LINT1: NMI (remote IRR is read-only)
    assert apic.read(0x320, 4) == 0x20030
    assert apic.read(0x350, 4) == 0x700
    assert apic.read(0x360, 4) == 0x400


def test_timer_stores_its_count_but_never_counts(apic):
    apic.write(0x3E0, 4, 0xFF)
    apic.write(0x380, 4, 1_000_000)
    assert apic.read(0x3E0, 4) == 0x0B
    assert apic.read(0x380, 4) == 1_000_000 and apic.read(0x390, 4) == 0


def test_unknown_offsets_read_zero_and_ignore_writes(apic):
    for offset in (0x00, 0x40, 0x2F0, 0x3F0, 0xFF0):
        apic.write(offset, 4, 0xFFFFFFFF)
        assert apic.read(offset, 4) == 0


def test_narrow_reads_take_bytes_of_the_register(apic):
    assert apic.read(0x30, 1) == 0x14
    assert apic.read(0x32, 1) == 0x05
    assert apic.read(0x30, 2) == 0x0014
    assert apic.read(0x34, 4) == 0  # beyond the 32-bit register


def test_reset_restores_the_power_on_values(apic):
    apic.write(0xF0, 4, 0x1FF)
    apic.write(0x80, 4, 0x40)
    apic.reset()
    assert apic.read(0xF0, 4) == 0xFF and apic.read(0x80, 4) == 0
