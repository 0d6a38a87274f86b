"""The real-mode interrupt vector table (0x0-0x3FF), the BIOS data area (0x400-0x4FF)
and the extended BIOS data area, as QEMU 7.2's SeaBIOS leaves them for `-kernel`.

Every value was read on QEMU (Debian's 7.2, SeaBIOS 1.16 and SeaVGABIOS, the i440FX
machine) by guests/probeboot, which prints all three areas. The field offsets are the
BIOS data area's classic layout (IBM PC/AT Technical Reference; Ralf Brown's Interrupt
List, "MEM 0040h"). The vectors are far pointers into SeaBIOS's and the VGA BIOS's code;
pvtool has no real-mode BIOS, so a kernel may read them but not call them.

Departures: the timer count at 0x46C is the ticks since midnight of pvtool's RTC at
power-on, where QEMU's follows the host's clock and has advanced during POST. With a
disk, the fixed disk parameter table in the EBDA is the untranslated one SeaBIOS writes
for disks of up to 1024 cylinders; the LBA-translated form of larger disks is not
modelled.
"""

import struct

from pvtool.image.multiboot import PC_CONVENTIONAL_MEMORY_KIB
from pvtool.machine.ata_identify import identify_block
from pvtool.machine.parallel import LPT1_BASE
from pvtool.machine.pit import PIT_HZ
from pvtool.machine.uart import COM1_BASE
from pvtool.machine.vga_text import CRTC_COLOUR_PORT

IVT_ENTRIES = 256
IVT_BASE = 0x0
BDA_BASE = 0x400
BDA_SIZE = 0x100
# SeaBIOS puts the EBDA in the last KiB below 640 KiB; int 0x12, the BDA and the
# Multiboot mem_lower report the memory below it.
EBDA_BASE = PC_CONVENTIONAL_MEMORY_KIB * 1024
EBDA_SIZE_KIB = 1

# Every vector SeaBIOS does not set points at its default handler, an iret.
DEFAULT_VECTOR = (0xF000, 0xFF53)
VECTORS = {  # vector: (segment, offset)
    0x02: (0xF000, 0xE2C3), 0x05: (0xF000, 0xFF54), 0x08: (0xF000, 0xFEA5),
    0x09: (0xF000, 0xE987), 0x0A: (0xF000, 0xD42E), 0x0B: (0xF000, 0xD42E),
    0x0C: (0xF000, 0xD42E), 0x0D: (0xF000, 0xD42E), 0x0E: (0xF000, 0xEF57),
    0x0F: (0xF000, 0xD42E), 0x10: (0xC000, 0x578B), 0x11: (0xF000, 0xF84D),
    0x12: (0xF000, 0xF841), 0x13: (0xF000, 0xE3FE), 0x14: (0xF000, 0xE739),
    0x15: (0xF000, 0xF859), 0x16: (0xF000, 0xE82E), 0x17: (0xF000, 0xEFD2),
    0x18: (0xF000, 0xD453), 0x19: (0xF000, 0xE6F2), 0x1A: (0xF000, 0xFE6E),
    0x1E: (0xF000, 0x601C), 0x1F: (0xC000, 0x95C0), 0x40: (0xF000, 0xEC59),
    0x43: (0xC000, 0x73C0),
    0x70: (0xF000, 0xD413), 0x71: (0xF000, 0xD437), 0x72: (0xF000, 0xD437),
    0x73: (0xF000, 0xD437), 0x74: (0xF000, 0xD41C), 0x75: (0xF000, 0xD425),
    0x76: (0xF000, 0xD40A), 0x77: (0xF000, 0xD437),
}
# The user vectors 0x60-0x66 and 0x79 are left null, as the PC BIOS always did.
NULL_VECTORS = (*range(0x60, 0x67), 0x79)
# Vectors 0x41 and 0x46 point at the first and second hard disk's parameter tables.
PARAMETER_VECTORS = (0x41, 0x46)

# The BIOS data area: (offset from 0x400, struct format, value), a field a line.
BDA_FIELDS = (
    (0x00, "<4H", (COM1_BASE, 0, 0, 0)),  # COM1-COM4 base ports
    (0x08, "<3H", (LPT1_BASE, 0, 0)),  # LPT1-LPT3 base ports
    (0x0E, "<H", EBDA_BASE >> 4),  # EBDA segment
    # Equipment word: floppy, x87, PS/2 mouse, 80x25 colour, one COM port, one LPT.
    (0x10, "<H", 0x4227),
    (0x13, "<H", PC_CONVENTIONAL_MEMORY_KIB),
    (0x1A, "<2H", (0x1E, 0x1E)),  # keyboard buffer head and tail (empty)
    (0x49, "<B", 0x03),  # video mode 3: 80x25 colour text
    (0x4A, "<H", 80),  # columns
    (0x4C, "<H", 0x1000),  # bytes per video page
    (0x50, "<H", 0x0200),  # page 0's cursor: row 2, column 0 (after SeaBIOS's two lines)
    (0x60, "<H", 0x0607),  # cursor shape: scan lines 6 to 7
    (0x63, "<H", CRTC_COLOUR_PORT),  # CRTC index port
    (0x76, "<B", 0xC0),  # fixed disk control byte
    (0x78, "<B", 0x14),  # LPT1 time-out
    (0x7C, "<B", 0x0A),  # COM1 time-out
    (0x80, "<2H", (0x1E, 0x3E)),  # keyboard buffer start and end
    (0x84, "<BH", (24, 16)),  # rows on screen - 1, character height
    (0x87, "<4B", (0x60, 0xF9, 0x51, 0x08)),  # EGA/VGA control, switches, flags, DCC
    (0x8F, "<B", 0x07),  # floppy drive information
    (0x96, "<B", 0x10),  # keyboard: 101/102-key
    (0xA8, "<2H", (0x6820, 0xC000)),  # VGA save pointer table (offset, segment)
    (0xB9, "<2B", (0x40, 0x03)),  # SeaVGABIOS's private bytes
    (0xBC, "<H", 0x68C6),
)
BDA_TIMER_TICKS = 0x6C
BDA_HARD_DISKS = 0x75
SECONDS_PER_DAY = 86400
PIT_TICKS_PER_BIOS_TICK = 65536  # IRQ 0 at the PIT's slowest rate: 18.2 Hz

# The fixed disk parameter tables (IBM AT BIOS) SeaBIOS writes in the EBDA for the
# first two hard disks, one after the other.
FDPT_OFFSET = 0x3D
FDPT = struct.Struct("<HBHHBB3xHBx")  # cyls, heads, 0, precomp, 0, control, landing, spt
NO_PRECOMPENSATION = 0xFFFF
FDPT_CONTROL = 0xC0  # retries disabled
FDPT_MANY_HEADS = 0x08  # more than 8 heads


def ivt(hard_disks: int) -> bytes:
    """The 256 far pointers, offset first."""
    vectors = [VECTORS.get(v, DEFAULT_VECTOR) for v in range(IVT_ENTRIES)]
    for v in NULL_VECTORS:
        vectors[v] = (0, 0)
    for disk, vector in enumerate(PARAMETER_VECTORS[:hard_disks]):
        vectors[vector] = (EBDA_BASE >> 4, FDPT_OFFSET + disk * FDPT.size)
    return b"".join(struct.pack("<HH", offset, segment) for segment, offset in vectors)


def bios_data_area(hard_disks: int, seconds_since_midnight: int) -> bytes:
    data = bytearray(BDA_SIZE)
    for offset, layout, value in BDA_FIELDS:
        values = value if isinstance(value, tuple) else (value,)
        struct.pack_into(layout, data, offset, *values)
    ticks = seconds_since_midnight % SECONDS_PER_DAY * PIT_HZ // PIT_TICKS_PER_BIOS_TICK
    struct.pack_into("<I", data, BDA_TIMER_TICKS, ticks)
    data[BDA_HARD_DISKS] = hard_disks
    return bytes(data)


def extended_bios_data_area(disk_sectors: list[int]) -> bytes:
    """The EBDA's first byte is its size in KiB; the parameters of the first two hard
    disks (DISK_SECTORS: each hard disk's size, in -drive index order) follow."""
    data = bytearray(EBDA_SIZE_KIB * 1024)
    data[0] = EBDA_SIZE_KIB
    for disk, sectors in enumerate(disk_sectors[:len(PARAMETER_VECTORS)]):
        FDPT.pack_into(data, FDPT_OFFSET + disk * FDPT.size, *_fdpt_fields(sectors))
    return bytes(data)


def _fdpt_fields(sectors: int) -> tuple[int, ...]:
    """The geometry the disk reports in IDENTIFY DEVICE (words 1, 3 and 6)."""
    words = struct.unpack("<256H", identify_block(sectors))
    cylinders, heads, per_track = words[1], words[3], words[6]
    control = FDPT_CONTROL | (FDPT_MANY_HEADS if heads > 8 else 0)
    return (cylinders, heads, 0, NO_PRECOMPENSATION, 0, control, cylinders, per_track)
