"""machine/acpi_pm.py: the PIIX4's PM block at 0x600 and SMI_CMD at 0xB2 on the PC,
its PM timer counting 3.579545 MHz of virtual time (ACPI 6.5, 4.8.3)."""

import pytest

from pvtool.machine.clock import VIRTUAL_HZ
from pvtool.machine.pc import Machine
from pvtool.machine.stop import StopKind

PM1_STATUS, PM1_CONTROL, PM_TIMER, SMI_CMD = 0x600, 0x604, 0x608, 0xB2
TMR_STS, SCI_EN, SLP_EN, SLP_TYP_S3 = 0x1, 0x1, 0x2000, 1 << 10
PM_TIMER_HZ = 3_579_545


@pytest.fixture
def machine():
    return Machine(output=lambda data: None)


def seconds(machine: Machine, s: float) -> None:
    machine.advance(int(s * VIRTUAL_HZ))


def test_the_timer_counts_3579545_ticks_a_virtual_second(machine):
    start = machine.ports.read(PM_TIMER, 4)
    seconds(machine, 1)
    assert machine.ports.read(PM_TIMER, 4) - start == PM_TIMER_HZ


def test_the_timer_runs_three_times_as_fast_as_the_pit(machine):
    insns = 10 * VIRTUAL_HZ // 1000
    start = machine.ports.read(PM_TIMER, 4)
    machine.advance(insns)
    pit_ticks = insns * 1_193_182 // VIRTUAL_HZ
    assert machine.ports.read(PM_TIMER, 4) - start == pytest.approx(3 * pit_ticks, abs=3)


def test_the_timer_is_24_bits_wide_and_wraps(machine):
    seconds(machine, 5)  # 17.9 M ticks: past 2**24
    assert machine.ports.read(PM_TIMER, 4) == 5 * PM_TIMER_HZ - (1 << 24)


def test_word_reads_of_the_timer_split_its_halves(machine):
    seconds(machine, 3)
    whole = machine.ports.read(PM_TIMER, 4)
    assert machine.ports.read(PM_TIMER, 2) == whole & 0xFFFF
    assert machine.ports.read(PM_TIMER + 2, 2) == whole >> 16


def test_timer_status_is_set_at_power_on_and_clears_when_written_with_1(machine):
    assert machine.ports.read(PM1_STATUS, 2) & TMR_STS
    machine.ports.write(PM1_STATUS, 2, TMR_STS)
    assert not machine.ports.read(PM1_STATUS, 2) & TMR_STS


def test_timer_status_sets_again_when_bit_23_of_the_count_changes(machine):
    machine.ports.write(PM1_STATUS, 2, TMR_STS)
    half_period = (1 << 23) / PM_TIMER_HZ  # 2.34 s
    seconds(machine, half_period - 0.01)
    assert not machine.ports.read(PM1_STATUS, 2) & TMR_STS
    seconds(machine, 0.02)
    assert machine.ports.read(PM1_STATUS, 2) & TMR_STS


def test_writing_0_to_status_clears_nothing(machine):
    machine.ports.write(PM1_STATUS, 2, 0)
    assert machine.ports.read(PM1_STATUS, 2) & TMR_STS


def test_acpi_enable_and_disable_through_smi_cmd_switch_sci_en(machine):
    assert machine.ports.read(PM1_CONTROL, 2) & SCI_EN == 0
    machine.ports.write(SMI_CMD, 1, 0xF1)
    assert machine.ports.read(PM1_CONTROL, 2) & SCI_EN
    machine.ports.write(SMI_CMD, 1, 0xF0)
    assert machine.ports.read(PM1_CONTROL, 2) & SCI_EN == 0


def test_control_keeps_what_the_os_writes_but_slp_en(machine):
    machine.ports.write(PM1_CONTROL, 2, SLP_TYP_S3 | SCI_EN)
    assert machine.ports.read(PM1_CONTROL, 2) == SLP_TYP_S3 | SCI_EN
    assert machine.stop is None


@pytest.mark.parametrize("sleep_type", [0, 2])  # \_S5 and \_S4 in QEMU's DSDT
def test_slp_en_with_the_s5_or_s4_sleep_type_powers_off(machine, sleep_type):
    machine.ports.write(PM1_CONTROL, 2, sleep_type << 10 | SLP_EN)
    assert machine.stop.kind is StopKind.SHUTDOWN and machine.stop.code == 0


def test_slp_en_with_the_s3_sleep_type_does_not_power_off(machine):
    machine.ports.write(PM1_CONTROL, 2, SLP_TYP_S3 | SLP_EN)
    assert machine.stop is None
    assert machine.ports.read(PM1_CONTROL, 2) == SLP_TYP_S3


def test_the_apm_ports_read_what_seabios_left_and_keep_what_is_written(machine):
    assert machine.ports.read(SMI_CMD, 2) == 0x00B5  # measured with guests/portscan
    machine.ports.write(SMI_CMD + 1, 1, 0x5A)
    assert machine.ports.read(SMI_CMD + 1, 1) == 0x5A
    assert machine.ports.read(PM1_CONTROL, 2) & SCI_EN == 0  # a status byte is no command
