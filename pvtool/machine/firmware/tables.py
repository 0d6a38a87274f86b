"""All of the firmware's tables, in the order SeaBIOS builds them (which decides their
places in the F segment: layout.py)."""

from collections.abc import Iterable

from pvtool.machine.cpuid import CpuModel
from pvtool.machine.firmware.acpi import write_acpi
from pvtool.machine.firmware.layout import FSegment
from pvtool.machine.firmware.mptable import write_mp_tables
from pvtool.machine.firmware.smbios import write_smbios
from pvtool.machine.memory import GuestMemory
from pvtool.machine.pci import PciFunction


def write_tables(memory: GuestMemory, ram_size: int, functions: Iterable[PciFunction],
                 cpu: CpuModel) -> None:
    """ACPI, SMBIOS and MP tables for a machine with RAM_SIZE bytes, these PCI
    FUNCTIONS and this CPU."""
    fseg = FSegment()
    write_acpi(memory, ram_size, fseg)
    write_smbios(memory, ram_size, fseg, cpu)
    write_mp_tables(memory, fseg, functions, cpu)
