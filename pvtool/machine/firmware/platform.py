"""The facts of QEMU's i440FX PC that the firmware tables describe and that no device
model of pvtool's owns yet: the I/O APIC, the HPET block, the CPU's identification,
and which ISA interrupt lines the PCI devices took (measured with guests/probefw).
"""

IOAPIC_BASE, IOAPIC_ID, IOAPIC_VERSION = 0xFEC00000, 0, 0x11
HPET_BASE, HPET_BLOCK_ID = 0xFED00000, 0x8086A201  # Intel's vendor ID, 3 comparators
# CPUID leaf 1 of QEMU's default 32-bit CPU (qemu32): EAX (family 6, model 6,
# stepping 3) and EDX (the feature flags), as the MP table and SMBIOS copy them.
CPU_SIGNATURE, CPU_FEATURES = 0x00000663, 0x0781ABFD
BOOT_CPU_APIC_ID = 0
ISA_IRQS = 16
TIMER_IRQ, TIMER_GSI = 0, 2  # the PIT's IRQ 0 reaches the I/O APIC's input 2
CASCADE_IRQ = 2  # the slave 8259's line: no device interrupts through it
PCI_IRQS = (5, 9, 10, 11)  # the lines PCI interrupts (and the SCI) use: level, high
