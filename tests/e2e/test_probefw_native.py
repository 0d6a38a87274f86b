"""probefw booted natively by pvtool next to QEMU, with a couple of memory sizes: the
MP, ACPI and SMBIOS tables, bus 0's PCI configuration space and the ACPI PM block are
the same bytes on the serial line, and the exit status is QEMU's guest code."""

from functools import partial

import pytest

from tests import cli
from tests.oracles import guest_path, run_qemu

pvtool_run = partial(cli.pvtool, "run", process=True, timeout=120)


@pytest.mark.parametrize("mib", [64, 512])
def test_native_probefw_prints_qemus_firmware_tables_and_pci_bus(mib):
    elf = guest_path("probefw")
    judge = run_qemu(elf, timeout=60, extra_args=("-m", str(mib)))

    done = pvtool_run("--native", "--quiet", "--memory", str(mib), str(elf))

    assert done.stdout_bytes == judge.stdout
    assert judge.guest_code == 0, judge.stdout.decode(errors="replace")
    assert done.status == judge.guest_code
    for found in (b"mp config:", b"acpi RSDT at ", b"smbios entry at ", b"pci 00:2.0"):
        assert found in done.stdout_bytes  # the probe found what it compares


def test_native_probefw_powers_off_through_acpi_as_on_qemu():
    """The kernel finds \\_S5 in the DSDT and writes its sleep type with SLP_EN: QEMU
    powers off (exit status 0) after the same bytes, and so does pvtool."""
    elf = guest_path("probefw")
    judge = run_qemu(elf, timeout=60, extra_args=("-append", "poweroff"))

    done = pvtool_run("--native", "--quiet", "--cmdline", "poweroff", str(elf))

    assert done.stdout_bytes == judge.stdout
    assert judge.stdout.endswith(b"powering off through ACPI, S5 sleep type 0\n")
    assert judge.status == done.status == 0
    assert done.stderr_bytes == b""
