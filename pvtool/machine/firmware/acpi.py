"""The ACPI tables of QEMU 7.2's i440FX PC (ACPI 6.5, chapter 5.2), built from their
documented layout with the values measured with guests/probefw.

QEMU writes one block at the start of the high zone (layout.py), in this order, each
table right after the last: the FACS (64-byte aligned, first), the DSDT, the FADT, the
MADT, the HPET table, the WAET and the RSDT listing the four in between. SeaBIOS puts
the revision-0 RSDP in the F segment. Every table's header carries QEMU's OEM fields
and revision 1; the FADT is ACPI 1.0's (116 bytes: no reset register, no X_ fields).

Departures: the DSDT is not QEMU's AML. Reproducing QEMU's 6,476 bytes of AML would
mean copying them; pvtool's DSDT is a small valid one (the sleep-state packages \\_S3,
\\_S4 and \\_S5 with QEMU's values, and the PCI root bridge \\_SB.PCI0), padded with a
buffer to QEMU's exact length so that every table after it sits where QEMU's does. Its
header matches QEMU's but for the checksum byte; a kernel that interprets AML finds
none of QEMU's devices (HPET, ISA devices, PCI interrupt links, CPU hotplug).
"""

import struct

from pvtool.machine.acpi_pm import (
    ACPI_DISABLE,
    ACPI_ENABLE,
    PM1_CONTROL,
    PM1_CONTROL_LEN,
    PM1_EVENT_LEN,
    PM1_STATUS,
    PM_TIMER,
    PM_TIMER_LEN,
    SMI_COMMAND_PORT,
)
from pvtool.machine.cmos import CENTURY
from pvtool.machine.firmware import aml
from pvtool.machine.firmware.layout import FSegment, high_zone, pack_string, with_checksum
from pvtool.machine.firmware.platform import BOOT_CPU_APIC_ID, PCI_IRQS
from pvtool.machine.hpet import BLOCK_ID as HPET_BLOCK_ID
from pvtool.machine.hpet import HPET_BASE
from pvtool.machine.ioapic import ID_AT_RESET as IOAPIC_ID
from pvtool.machine.ioapic import IOAPIC_BASE
from pvtool.machine.ioapic import PIT_LINE as TIMER_IRQ
from pvtool.machine.ioapic import PIT_PIN as TIMER_GSI
from pvtool.machine.lapic import APIC_BASE
from pvtool.machine.memory import GuestMemory
from pvtool.machine.pci_devices import PM_BASE, SCI_IRQ

HEADER = struct.Struct("<4sIBB6s8sI4sI")  # 5.2.6, "System Description Table Header"
HEADER_CHECKSUM = 9
OEM_ID, OEM_TABLE_ID, OEM_REVISION = b"BOCHS", b"BXPC", 1
CREATOR_ID, CREATOR_REVISION = b"BXPC", 1
TABLE_REVISION = 1

RSDP = struct.Struct("<8sB6sBI")  # 5.2.5.3, the ACPI 1.0 part (revision 0)
RSDP_CHECKSUM = 8
FACS = struct.Struct("<4sI56x")  # 5.2.10: all zero but its signature and length
FADT = struct.Struct("<IIBBHIBBBB8I8B4H5BHBI")  # 5.2.9, ACPI 1.0's fields
FADT_INT_MODEL = 1  # ACPI 1.0's "dual PIC" model field
PROCESSOR_LATENCY_NONE = 0x0FFF  # P_LVL2_LAT and P_LVL3_LAT: C2 and C3 unsupported
GPE0_BLK, GPE0_BLK_LEN = 0xAFE0, 4
# WBINVD, PROC_C1, SLP_BUTTON, RTC_S4, USE_PLATFORM_CLOCK (5.2.9, Table 5.10)
FADT_FLAGS = 0x0001 | 0x0004 | 0x0020 | 0x0080 | 0x8000

MADT_PCAT_COMPAT = 0x1
LOCAL_APIC, IO_APIC, SOURCE_OVERRIDE, LOCAL_APIC_NMI = 0, 1, 2, 4  # 5.2.12 entry types
MADT_LOCAL_APIC = struct.Struct("<BBBBI")
MADT_IO_APIC = struct.Struct("<BBBxII")
MADT_SOURCE_OVERRIDE = struct.Struct("<BBBBIH")
MADT_LOCAL_APIC_NMI = struct.Struct("<BBBHB")
APIC_ENABLED = 0x1
LEVEL_ACTIVE_HIGH = 0x000D  # MPS INTI flags: polarity active high, trigger level
CONFORMING = 0
ALL_PROCESSORS, LINT1 = 0xFF, 1

HPET_BODY = struct.Struct("<IBBBBQBHB")  # IA-PC HPET spec 1.0a, "HPET Description Table"
WAET_PM_TIMER_GOOD = 0x2  # Microsoft's WAET: one read of the PM timer is enough
DSDT_LENGTH = 0x194C  # QEMU's DSDT's length (measured)
SLEEP_STATES = {"\\_S3": (1, 1, 0, 0), "\\_S4": (2, 2, 0, 0), "\\_S5": (0, 0, 0, 0)}


def table(signature: bytes, body: bytes) -> bytes:
    header = HEADER.pack(signature, HEADER.size + len(body), TABLE_REVISION, 0,
                         pack_string(OEM_ID, 6), pack_string(OEM_TABLE_ID, 8),
                         OEM_REVISION, CREATOR_ID, CREATOR_REVISION)
    return with_checksum(header + body, HEADER_CHECKSUM)


def facs() -> bytes:
    return FACS.pack(b"FACS", FACS.size)


def dsdt() -> bytes:
    """The small DSDT, padded to QEMU's length with a buffer named \\PADB."""
    sleep = [aml.name(path, aml.package(*map(aml.integer, values)))
             for path, values in SLEEP_STATES.items()]
    aml_code = aml.scope("\\", *sleep) + aml.scope(
        "\\_SB", aml.device("PCI0", aml.name("_HID", aml.integer(aml.eisa_id("PNP0A03"))),
                            aml.name("_ADR", aml.integer(0)), aml.name("_UID", aml.integer(0))))
    room = DSDT_LENGTH - HEADER.size - len(aml_code)
    size = room  # the buffer's encoding grows with its size: settle by steps
    while len(pad := aml.name("\\PADB", aml.buffer(size))) != room:
        size -= len(pad) - room
    return table(b"DSDT", aml_code + pad)


def fadt(facs_address: int, dsdt_address: int) -> bytes:
    body = FADT.pack(
        facs_address, dsdt_address, FADT_INT_MODEL, 0, SCI_IRQ, SMI_COMMAND_PORT,
        ACPI_ENABLE, ACPI_DISABLE, 0, 0,
        PM_BASE + PM1_STATUS, 0, PM_BASE + PM1_CONTROL, 0, 0, PM_BASE + PM_TIMER,
        GPE0_BLK, 0,
        PM1_EVENT_LEN, PM1_CONTROL_LEN, 0, PM_TIMER_LEN, GPE0_BLK_LEN, 0, 0, 0,
        PROCESSOR_LATENCY_NONE, PROCESSOR_LATENCY_NONE, 0, 0,
        0, 0, 0, 0, CENTURY, 0, 0, FADT_FLAGS)
    return table(b"FACP", body)


def madt() -> bytes:
    """The boot CPU's local APIC, the I/O APIC, IRQ 0 moved to input 2, the PCI lines
    level-triggered, and every CPU's LINT1 as NMI."""
    entries = [
        MADT_LOCAL_APIC.pack(LOCAL_APIC, MADT_LOCAL_APIC.size, 0, BOOT_CPU_APIC_ID,
                             APIC_ENABLED),
        MADT_IO_APIC.pack(IO_APIC, MADT_IO_APIC.size, IOAPIC_ID, IOAPIC_BASE, 0),
        MADT_SOURCE_OVERRIDE.pack(SOURCE_OVERRIDE, MADT_SOURCE_OVERRIDE.size, 0, TIMER_IRQ,
                                  TIMER_GSI, CONFORMING),
    ]
    entries += [MADT_SOURCE_OVERRIDE.pack(SOURCE_OVERRIDE, MADT_SOURCE_OVERRIDE.size, 0,
                                          irq, irq, LEVEL_ACTIVE_HIGH) for irq in PCI_IRQS]
    entries.append(MADT_LOCAL_APIC_NMI.pack(LOCAL_APIC_NMI, MADT_LOCAL_APIC_NMI.size,
                                            ALL_PROCESSORS, CONFORMING, LINT1))
    return table(b"APIC", struct.pack("<II", APIC_BASE, MADT_PCAT_COMPAT) + b"".join(entries))


def hpet() -> bytes:
    """The block's ID, its base as a memory-space Generic Address, number 0."""
    return table(b"HPET", HPET_BODY.pack(HPET_BLOCK_ID, 0, 0, 0, 0, HPET_BASE, 0, 0, 0))


def waet() -> bytes:
    return table(b"WAET", struct.pack("<I", WAET_PM_TIMER_GOOD))


def rsdt(addresses: list[int]) -> bytes:
    return table(b"RSDT", struct.pack(f"<{len(addresses)}I", *addresses))


def rsdp(rsdt_address: int) -> bytes:
    raw = RSDP.pack(b"RSD PTR ", 0, pack_string(OEM_ID, 6), 0, rsdt_address)
    return with_checksum(raw, RSDP_CHECKSUM)


def tables_block(base: int) -> tuple[bytes, int]:
    """QEMU's block of tables as it lies at BASE, and the RSDT's address."""
    block = bytearray(facs())
    dsdt_address = base + len(block)
    block += dsdt()
    listed = []
    for build in (lambda: fadt(base, dsdt_address), madt, hpet, waet):
        listed.append(base + len(block))
        block += build()
    rsdt_address = base + len(block)
    block += rsdt(listed)
    return bytes(block), rsdt_address


def write_acpi(memory: GuestMemory, ram_size: int, fseg: FSegment) -> int:
    """The tables into the high zone, the RSDP into the F segment; returns the RSDP's
    address."""
    base = high_zone(ram_size)  # 64-byte aligned, as the FACS must be
    block, rsdt_address = tables_block(base)
    memory.write_phys(base, block)
    address = fseg.allocate(RSDP.size)
    memory.write_phys(address, rsdp(rsdt_address))
    return address
