"""Power-on self test, as far as memory is concerned: everything QEMU's firmware has
written by the time its Multiboot option ROM starts the kernel. Each table is one call
here, in the order the firmware builds them."""

from pvtool.machine.disk import DiskImage
from pvtool.machine.firmware import bios_data
from pvtool.machine.firmware.tables import write_tables
from pvtool.machine.pc import RTC_EPOCH, Machine


def power_on(machine: Machine) -> None:
    """Write the firmware's data into MACHINE's low memory."""
    sectors = [drive.sectors for channel in machine.ata for drive in channel.drives
               if isinstance(drive, DiskImage)]
    write = machine.memory.write_phys
    write(bios_data.IVT_BASE, bios_data.ivt(len(sectors)))
    write(bios_data.BDA_BASE, bios_data.bios_data_area(
        hard_disks=len(sectors), seconds_since_midnight=RTC_EPOCH))
    write(bios_data.EBDA_BASE, bios_data.extended_bios_data_area(sectors))
    write_tables(machine.memory, machine.ram_size, machine.pci.functions.values())
