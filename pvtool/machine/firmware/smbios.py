"""The SMBIOS 2.8 tables SeaBIOS copies into the F segment for QEMU 7.2's PC (DMTF
DSP0134 3.x: the 2.1 entry point of 5.2.1 and the structures of chapter 7), with the
strings and values measured with guests/probefw. Memory sizes follow the machine's
RAM; a structure's handle is its type times 256, as QEMU numbers them.
"""

import struct

from pvtool.machine.cpuid import CpuModel
from pvtool.machine.firmware.layout import FSegment, with_checksum
from pvtool.machine.firmware.platform import SEABIOS_VERSION
from pvtool.machine.memory import GuestMemory

ENTRY = struct.Struct("<4sBBBBHB5s5sBHIHB")
ENTRY_CHECKSUM, INTERMEDIATE, INTERMEDIATE_CHECKSUM = 4, 16, 5
VERSION = (2, 8)
HEADER = struct.Struct("<BBH")  # type, length of the formatted area, handle

BIOS, SYSTEM, CHASSIS, PROCESSOR = 0, 1, 3, 4
MEMORY_ARRAY, MEMORY_DEVICE, ARRAY_MAPPED_ADDRESS, BOOT_INFO, END_OF_TABLE = (
    16, 17, 19, 32, 127)
NO_HANDLE, UNKNOWN_WIDTH = 0xFFFE, 0xFFFF

BIOS_VENDOR, BIOS_VERSION, BIOS_DATE = b"SeaBIOS", SEABIOS_VERSION.encode(), b"04/01/2014"
MANUFACTURER = b"QEMU"
PRODUCT, MACHINE_TYPE = b"Standard PC (i440FX + PIIX, 1996)", b"pc-i440fx-7.2"
BIOS_SEGMENT = 0xE800
CHARACTERISTICS_UNSUPPORTED = 0x08  # "BIOS Characteristics are not supported"
CHARACTERISTICS_EXT2_TARGETED_CONTENT = 0x04
WAKEUP_POWER_SWITCH = 6
CHASSIS_OTHER, STATE_SAFE, SECURITY_UNKNOWN = 1, 3, 2
CPU_CENTRAL, CPU_FAMILY_OTHER, CPU_MHZ = 3, 1, 2000
CPU_POPULATED_ENABLED, CPU_UPGRADE_OTHER, CPU_64_BIT_UNKNOWN = 0x41, 1, 0x0002
ARRAY_OTHER, ARRAY_SYSTEM_MEMORY, ECC_MULTI_BIT = 1, 3, 6
FORM_DIMM, TYPE_RAM, DETAIL_OTHER = 9, 7, 0x0002


def structure(kind: int, fields: bytes, strings: tuple[bytes, ...] = ()) -> bytes:
    """A structure: header, formatted area, and its strings, each NUL-terminated, the
    set ended by one more NUL (two NULs when there are none)."""
    tail = b"".join(s + b"\0" for s in strings) + b"\0" if strings else b"\0\0"
    return HEADER.pack(kind, HEADER.size + len(fields), kind << 8) + fields + tail


def structures(ram_size: int, cpu: CpuModel) -> list[bytes]:
    kib, mib = ram_size >> 10, ram_size >> 20
    return [
        structure(BIOS, struct.pack("<BBHBBQ6B", 1, 2, BIOS_SEGMENT, 3, 0,
                                    CHARACTERISTICS_UNSUPPORTED, 0,
                                    CHARACTERISTICS_EXT2_TARGETED_CONTENT, 0, 0, 0xFF, 0xFF),
                  (BIOS_VENDOR, BIOS_VERSION, BIOS_DATE)),
        structure(SYSTEM, struct.pack("<4B16s3B", 1, 2, 3, 0, bytes(16),
                                      WAKEUP_POWER_SWITCH, 0, 0),
                  (MANUFACTURER, PRODUCT, MACHINE_TYPE)),
        structure(CHASSIS, struct.pack("<9BI5B", 1, CHASSIS_OTHER, 2, 0, 0, STATE_SAFE,
                                       STATE_SAFE, STATE_SAFE, SECURITY_UNKNOWN, 0,
                                       0, 0, 0, 0, 0),
                  (MANUFACTURER, MACHINE_TYPE)),
        structure(PROCESSOR, _processor(cpu), (b"CPU 0", MANUFACTURER, MACHINE_TYPE)),
        structure(MEMORY_ARRAY, struct.pack("<3BIHHQ", ARRAY_OTHER, ARRAY_SYSTEM_MEMORY,
                                            ECC_MULTI_BIT, kib, NO_HANDLE, 1, 0)),
        structure(MEMORY_DEVICE, struct.pack(
            "<5H5BHH5BI4H", MEMORY_ARRAY << 8, NO_HANDLE, UNKNOWN_WIDTH, UNKNOWN_WIDTH, mib,
            FORM_DIMM, 0, 1, 0, TYPE_RAM, DETAIL_OTHER, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0),
            (b"DIMM 0", MANUFACTURER)),
        structure(ARRAY_MAPPED_ADDRESS, struct.pack("<IIHBQQ", 0, kib - 1, MEMORY_ARRAY << 8,
                                                    1, 0, 0)),
        structure(BOOT_INFO, struct.pack("<6sB", bytes(6), 0)),
        structure(END_OF_TABLE, b""),
    ]


def _processor(cpu: CpuModel) -> bytes:
    """Type 4: the CPUID signature and features as its ID, one core, one thread."""
    return struct.pack("<4BQBBHHHBB3H6BHH", 1, CPU_CENTRAL, CPU_FAMILY_OTHER, 2,
                       cpu.features << 32 | cpu.signature, 3, 0, 0, CPU_MHZ, CPU_MHZ,
                       CPU_POPULATED_ENABLED, CPU_UPGRADE_OTHER, 0xFFFF, 0xFFFF, 0xFFFF,
                       0, 0, 0, 1, 1, 1, CPU_64_BIT_UNKNOWN, CPU_FAMILY_OTHER)


def entry_point(table_address: int, table: list[bytes]) -> bytes:
    raw = ENTRY.pack(b"_SM_", 0, ENTRY.size, *VERSION, max(map(len, table)), 0, bytes(5),
                     b"_DMI_", 0, sum(map(len, table)), table_address, len(table),
                     VERSION[0] << 4 | VERSION[1])
    raw = raw[:INTERMEDIATE] + with_checksum(raw[INTERMEDIATE:], INTERMEDIATE_CHECKSUM)
    return with_checksum(raw, ENTRY_CHECKSUM)


def write_smbios(memory: GuestMemory, ram_size: int, fseg: FSegment, cpu: CpuModel) -> int:
    """The entry point and the structures into the F segment; returns the entry
    point's address."""
    table = structures(ram_size, cpu)
    entry = fseg.allocate(ENTRY.size)
    address = fseg.allocate(sum(map(len, table)))
    memory.write_phys(entry, entry_point(address, table))
    memory.write_phys(address, b"".join(table))
    return entry
