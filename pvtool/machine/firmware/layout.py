"""Where SeaBIOS (1.16.2, under QEMU 7.2) leaves the tables a kernel looks for, as
measured with guests/probefw, and the checksum they all share.

The small tables are copied into the F segment one after another, each on a 16-byte
boundary, from FSEG_TABLES on, in the order SeaBIOS builds them: the ACPI RSDP, the
SMBIOS entry point and structures, the MP floating pointer and configuration table.
QEMU's ACPI tables sit in one block at the start of the high zone, the last
HIGH_ZONE_SIZE bytes of RAM, which the e820 map reserves.
"""

import struct

FSEG_TABLES = 0xF59D0
FSEG_ALIGN = 16
HIGH_ZONE_SIZE = 0x20000


def checksum(data: bytes) -> int:
    """The byte that makes DATA add up to 0 (mod 256): every table's rule."""
    return -sum(data) & 0xFF


def with_checksum(data: bytes, offset: int, length: int | None = None) -> bytes:
    """DATA with the byte at OFFSET set so that its first LENGTH bytes (all of it by
    default) add up to 0; the byte must be 0 on entry."""
    out = bytearray(data)
    out[offset] = checksum(out[:length])
    return bytes(out)


def pack_string(text: bytes, width: int) -> bytes:
    """A fixed-width identifier field, padded with spaces (ACPI and MP OEM ids)."""
    return struct.pack(f"{width}s", text.ljust(width))


def high_zone(ram_size: int) -> int:
    """The first byte of the high zone, where QEMU's ACPI tables start."""
    return ram_size - HIGH_ZONE_SIZE


class FSegment:
    """The F segment's table area, handed out in SeaBIOS's order and alignment."""

    def __init__(self):
        self.next = FSEG_TABLES

    def allocate(self, size: int) -> int:
        address = self.next
        self.next = -(-(address + size) // FSEG_ALIGN) * FSEG_ALIGN
        return address
