"""The Intel MultiProcessor Specification 1.4 tables SeaBIOS builds for QEMU's PC
(the spec's chapter 4), with the values measured with guests/probefw: the floating
pointer structure (4.1) and the configuration table (4.2), whose entries (4.3) are
the one processor, the PCI and ISA buses, the I/O APIC, an interrupt assignment for
each PCI function that interrupts and each ISA line the PCI devices left alone, and
the local APIC's ExtINT and NMI inputs.
"""

import struct
from collections.abc import Iterable

from pvtool.machine.cpuid import CpuModel
from pvtool.machine.firmware.layout import FSegment, pack_string, with_checksum
from pvtool.machine.firmware.platform import (
    BOOT_CPU_APIC_ID,
    CASCADE_IRQ,
    IOAPIC_VERSION,
    ISA_IRQS,
    PCI_IRQS,
)
from pvtool.machine.ioapic import ID_AT_RESET as IOAPIC_ID
from pvtool.machine.ioapic import IOAPIC_BASE
from pvtool.machine.ioapic import PIT_LINE as TIMER_IRQ
from pvtool.machine.ioapic import PIT_PIN as TIMER_GSI
from pvtool.machine.lapic import APIC_BASE, VERSION_VALUE
from pvtool.machine.memory import GuestMemory
from pvtool.machine.pci import PciFunction

FLOATING = struct.Struct("<4sIBBB5s")
CONFIG_HEADER = struct.Struct("<4sHBB8s12sIHHIHBx")
PROCESSOR = struct.Struct("<BBBBII8x")
BUS = struct.Struct("<BB6s")
IOAPIC = struct.Struct("<BBBBI")
INTERRUPT = struct.Struct("<BBHBBBB")  # I/O and local interrupt entries alike
SPEC_REVISION = 4  # 1.4
OEM_ID, PRODUCT_ID = b"BOCHSCPU", b"0.1"
FLOATING_CHECKSUM, CONFIG_CHECKSUM = 10, 7  # the checksum bytes' offsets

PROCESSOR_ENTRY, BUS_ENTRY, IOAPIC_ENTRY, IO_INTERRUPT_ENTRY, LOCAL_INTERRUPT_ENTRY = range(5)
CPU_ENABLED, CPU_BOOTSTRAP = 0x1, 0x2
IOAPIC_ENABLED = 0x1
PCI_BUS, ISA_BUS = 0, 1
INT, NMI, EXTINT = 0, 1, 3
PCI_INTERRUPT_FLAGS = 0x0001  # what SeaBIOS writes: polarity active high, trigger conforming
CONFORMING = 0
ALL_LOCAL_APICS = 0xFF


def entries(functions: Iterable[PciFunction], cpu: CpuModel) -> list[bytes]:
    """The configuration table's entries, in SeaBIOS's order (the processor's
    signature and features are CPUID leaf 1's)."""
    out = [
        PROCESSOR.pack(PROCESSOR_ENTRY, BOOT_CPU_APIC_ID, VERSION_VALUE & 0xFF,
                       CPU_ENABLED | CPU_BOOTSTRAP, cpu.signature, cpu.features),
        BUS.pack(BUS_ENTRY, PCI_BUS, pack_string(b"PCI", 6)),
        BUS.pack(BUS_ENTRY, ISA_BUS, pack_string(b"ISA", 6)),
        IOAPIC.pack(IOAPIC_ENTRY, IOAPIC_ID, IOAPIC_VERSION, IOAPIC_ENABLED, IOAPIC_BASE),
    ]
    for function in functions:
        line, pin = function.interrupt
        if pin:  # the source is the device and its pin (INTA# is 0), 4.3.4
            source = function.slot << 2 | (pin - 1)
            out.append(_io_interrupt(PCI_INTERRUPT_FLAGS, PCI_BUS, source, line))
    for irq in range(ISA_IRQS):
        if irq != CASCADE_IRQ and irq not in PCI_IRQS:
            pin = TIMER_GSI if irq == TIMER_IRQ else irq
            out.append(_io_interrupt(CONFORMING, ISA_BUS, irq, pin))
    out += [
        INTERRUPT.pack(LOCAL_INTERRUPT_ENTRY, EXTINT, CONFORMING, ISA_BUS, 0, 0, 0),
        INTERRUPT.pack(LOCAL_INTERRUPT_ENTRY, NMI, CONFORMING, ISA_BUS, 0, ALL_LOCAL_APICS, 1),
    ]
    return out


def _io_interrupt(flags: int, bus: int, source: int, pin: int) -> bytes:
    return INTERRUPT.pack(IO_INTERRUPT_ENTRY, INT, flags, bus, source, IOAPIC_ID, pin)


def config_table(functions: Iterable[PciFunction], cpu: CpuModel) -> bytes:
    body = entries(functions, cpu)
    length = CONFIG_HEADER.size + sum(map(len, body))
    header = CONFIG_HEADER.pack(b"PCMP", length, SPEC_REVISION, 0, pack_string(OEM_ID, 8),
                                pack_string(PRODUCT_ID, 12), 0, 0, len(body), APIC_BASE,
                                0, 0)
    return with_checksum(header + b"".join(body), CONFIG_CHECKSUM)


def floating_pointer(config_address: int) -> bytes:
    """One paragraph long, default configuration 0 (the table describes the machine)."""
    raw = FLOATING.pack(b"_MP_", config_address, 1, SPEC_REVISION, 0, bytes(5))
    return with_checksum(raw, FLOATING_CHECKSUM)


def write_mp_tables(memory: GuestMemory, fseg: FSegment,
                    functions: Iterable[PciFunction], cpu: CpuModel) -> int:
    """Both structures into the F segment; returns the floating pointer's address."""
    table = config_table(functions, cpu)
    floating = fseg.allocate(FLOATING.size)
    config = fseg.allocate(len(table))
    memory.write_phys(floating, floating_pointer(config))
    memory.write_phys(config, table)
    return floating
