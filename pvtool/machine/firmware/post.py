"""Power-on self test: everything QEMU's firmware has written by the time its Multiboot
option ROM starts the kernel, each table one call here in the order the firmware builds
them, and the one device register its probing leaves changed that a kernel relies on."""

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
    # SeaBIOS probes device 0, then device 1, of each channel and leaves device 1
    # selected: QEMU's Device register reads 0xB0 at entry on every channel with a drive
    # (guests/highhalf prints the primary's). xv6's ideinit waits for DRDY on whichever
    # device is selected, so with no disk 1 (status 0) it waits for ever on QEMU.
    for channel in machine.ata:
        channel.select(1)
