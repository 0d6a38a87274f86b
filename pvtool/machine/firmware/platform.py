"""The facts of QEMU's i440FX PC that the firmware tables state and that no device
model owns: the firmware's version, what SeaBIOS's MP table claims, the CPU's
identification as the tables copy it, and the interrupt lines the PCI devices took
(measured with guests/probefw). Addresses and ids are the device models' own.
"""

SEABIOS_VERSION = "1.16.2-debian-1.16.2-1"  # Debian's, in QEMU 7.2
# SeaBIOS's MP table claims an 82093AA (version 0x11); the register reads QEMU's 0x20.
IOAPIC_VERSION = 0x11
BOOT_CPU_APIC_ID = 0  # the local APIC's ID register at reset
ISA_IRQS = 16
CASCADE_IRQ = 2  # the slave 8259's line: no device interrupts through it
PCI_IRQS = (5, 9, 10, 11)  # the lines PCI interrupts (and the SCI) use: level, high
