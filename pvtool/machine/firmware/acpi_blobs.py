"""QEMU's ACPI tables as its fw_cfg device hands them to the firmware, before SeaBIOS
installs them (measured with guests/probecfg): the block of tables and the RSDP as two
files, every pointer an offset into the tables' file and every checksum 0, and the
table-loader file, the script that tells the firmware how to place and fix them
(QEMU's hw/acpi/bios-linker-loader.c: commands of 128 bytes, names of 56).

The script allocates the RSDP in the F segment and the tables in high memory, then
for each table after the FACS adds its pointers (the FADT's FACS and DSDT, the RSDT's
entries) and its checksum, and last the RSDP's pointer to the RSDT and its checksum.
"""

import struct

from pvtool.machine.firmware.acpi import (
    FACS,
    HEADER,
    HEADER_CHECKSUM,
    RSDP,
    RSDP_CHECKSUM,
    rsdp,
    tables_block,
)

TABLES_FILE, RSDP_FILE, LOADER_FILE = "etc/acpi/tables", "etc/acpi/rsdp", "etc/table-loader"
ALLOCATE, ADD_POINTER, ADD_CHECKSUM = 1, 2, 3
ZONE_HIGH, ZONE_FSEG = 1, 2
TABLES_ALIGN, RSDP_ALIGN = 64, 16
COMMAND_SIZE, POINTER_SIZE = 128, 4
# hw/i386/acpi-build.c rounds the tables' file and the script up to these sizes.
TABLES_FILE_ALIGN, LOADER_FILE_ALIGN = 0x20000, 0x1000
RSDT_ADDRESS_FIELD = RSDP.size - POINTER_SIZE  # the revision-0 RSDP's last field
FADT_POINTERS = (HEADER.size, HEADER.size + POINTER_SIZE)  # FIRMWARE_CTRL, DSDT


def command(kind: int, layout: str, *fields) -> bytes:
    return struct.pack(f"<I{layout}", kind, *fields).ljust(COMMAND_SIZE, b"\0")


def allocate(name: str, align: int, zone: int) -> bytes:
    return command(ALLOCATE, "56sIB", name.encode(), align, zone)


def add_pointer(name: str, target: str, offset: int) -> bytes:
    return command(ADD_POINTER, "56s56sIB", name.encode(), target.encode(), offset,
                   POINTER_SIZE)


def add_checksum(name: str, offset: int, start: int, length: int) -> bytes:
    return command(ADD_CHECKSUM, "56sIII", name.encode(), offset, start, length)


def pointer_fields(signature: bytes, length: int) -> list[int]:
    """Where a table holds addresses of other tables, from its start."""
    if signature == b"FACP":
        return list(FADT_POINTERS)
    if signature == b"RSDT":
        return list(range(HEADER.size, length, POINTER_SIZE))
    return []


def rounded(data: bytes, alignment: int) -> bytes:
    return data.ljust(-(-len(data) // alignment) * alignment, b"\0")


def acpi_files() -> dict[str, bytes]:
    """The three files, by name."""
    block, rsdt_offset = tables_block(0)
    tables = bytearray(block)
    script = [allocate(RSDP_FILE, RSDP_ALIGN, ZONE_FSEG),
              allocate(TABLES_FILE, TABLES_ALIGN, ZONE_HIGH)]
    offset = FACS.size  # the FACS comes first, with neither pointers nor a checksum
    while offset < len(tables):
        signature, length = HEADER.unpack_from(tables, offset)[:2]
        script += [add_pointer(TABLES_FILE, TABLES_FILE, offset + field)
                   for field in pointer_fields(signature, length)]
        tables[offset + HEADER_CHECKSUM] = 0
        script.append(add_checksum(TABLES_FILE, offset + HEADER_CHECKSUM, offset, length))
        offset += length
    pointer = bytearray(rsdp(rsdt_offset))
    pointer[RSDP_CHECKSUM] = 0
    script += [add_pointer(RSDP_FILE, TABLES_FILE, RSDT_ADDRESS_FIELD),
               add_checksum(RSDP_FILE, RSDP_CHECKSUM, 0, RSDP.size)]
    return {RSDP_FILE: bytes(pointer), TABLES_FILE: rounded(tables, TABLES_FILE_ALIGN),
            LOADER_FILE: rounded(b"".join(script), LOADER_FILE_ALIGN)}
