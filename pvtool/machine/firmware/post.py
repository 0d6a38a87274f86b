"""Power-on self test: everything QEMU's firmware has written by the time its Multiboot
option ROM starts the kernel, each table one call here in the order the firmware builds
them, and the device state its probing and programming leave that a kernel sees (the
8259 pair's vectors and masks, the IDE channels' selected device); every other device
starts as it comes out of reset."""

from pvtool.machine.disk import DiskImage
from pvtool.machine.firmware import bios_data
from pvtool.machine.firmware.tables import write_tables
from pvtool.machine.pc import MASTER_PIC_PORT, RTC_EPOCH, SLAVE_PIC_PORT, Machine

# SeaBIOS's pic_setup (src/hw/pic.c): ICW1 (edge, cascade, ICW4 due), the vector base
# (0x08 and 0x70, the real-mode BIOS's), the cascade on IR2, 8086 mode; then the masks
# a kernel finds, measured on QEMU with guests/portscan: IRQ 0, 1, 2, 6 on the master
# and 8, 12, 13, 14 on the slave unmasked, the lines SeaBIOS has handlers for.
PIC_PROGRAM = ((MASTER_PIC_PORT, (0x11, 0x08, 0x04, 0x01, 0xB8)),
               (SLAVE_PIC_PORT, (0x11, 0x70, 0x02, 0x01, 0x8E)))


def power_on(machine: Machine) -> None:
    """Write the firmware's data into MACHINE's low memory and leave its devices as the
    firmware does."""
    sectors = [drive.sectors for channel in machine.ata for drive in channel.drives
               if isinstance(drive, DiskImage)]
    write = machine.memory.write_phys
    write(bios_data.IVT_BASE, bios_data.ivt(len(sectors)))
    write(bios_data.BDA_BASE, bios_data.bios_data_area(
        hard_disks=len(sectors), seconds_since_midnight=RTC_EPOCH))
    write(bios_data.EBDA_BASE, bios_data.extended_bios_data_area(sectors))
    write_tables(machine.memory, machine.ram_size, machine.pci.functions.values(),
                 machine.cpu_model)
    leave_devices(machine)


def leave_devices(machine: Machine) -> None:
    """The device state SeaBIOS's probing and programming leave. A PV domain boots on
    the same PC after its firmware, so it finds its devices so too; its memory, the
    domain builder's, holds none of the firmware's tables."""
    # SeaBIOS probes device 0, then device 1, of each channel and leaves device 1
    # selected: QEMU's Device register reads 0xB0 at entry on every channel with a drive
    # (guests/highhalf prints the primary's). xv6's ideinit waits for DRDY on whichever
    # device is selected, so with no disk 1 (status 0) it waits for ever on QEMU.
    for channel in machine.ata:
        channel.select(1)
    _program_pics(machine)


def _program_pics(machine: Machine) -> None:
    for port, (icw1, *rest) in PIC_PROGRAM:
        machine.ports.write(port, 1, icw1)
        for value in rest:  # ICW2-ICW4, then OCW1 (the mask)
            machine.ports.write(port + 1, 1, value)
