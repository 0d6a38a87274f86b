"""IDENTIFY DEVICE's 256 words for pvtool's ATA disks (ATA/ATAPI-6, "Identify device
information"), with the strings and the geometry QEMU's ide-hd shows (guests/pcprobe
measured them) and pvtool's own capabilities: PIO only, LBA28, FLUSH CACHE."""

# IDENTIFY's strings as QEMU's ide-hd gives them (pcprobe measured): the serial number
# counts the drives in -drive index order from 1.
MODEL = "QEMU HARDDISK"
SERIAL_FORMAT = "QM{:05d}"
FIRMWARE = "2.5+"
LBA28_MAX = 0x0FFFFFFF
# The geometry QEMU guesses for a disk from its size (hw/block/hd-geometry.c,
# guess_chs_for_size): 16 heads, 63 sectors a track, 2 to 16383 cylinders.
HEADS, SECTORS_PER_TRACK, MIN_CYLINDERS, MAX_CYLINDERS = 16, 63, 2, 16383


def identify_block(sectors: int, index: int = 0) -> bytes:
    """The 256 words of IDENTIFY DEVICE (its "Identify device information" table)
    for a fixed PIO disk of SECTORS sectors at -drive INDEX (its serial number): LBA28
    capacity at words 60-61, the integrity word last."""
    words = [0] * 256
    lba28 = min(sectors, LBA28_MAX)
    cylinders = min(max(lba28 // (HEADS * SECTORS_PER_TRACK), MIN_CYLINDERS), MAX_CYLINDERS)
    chs_capacity = cylinders * HEADS * SECTORS_PER_TRACK
    words[0] = 0x0040  # ATA device, fixed (not removable)
    words[1], words[3], words[6] = cylinders, HEADS, SECTORS_PER_TRACK
    _put_string(words, 10, 20, SERIAL_FORMAT.format(index + 1))
    _put_string(words, 23, 8, FIRMWARE)
    _put_string(words, 27, 40, MODEL)
    words[49] = 1 << 9  # LBA supported; no DMA
    words[50] = 0x4000
    words[51] = 0x0200  # PIO timing mode 2 (obsolete field)
    words[53] = 0x0003  # words 54-58 and 64-70 are valid
    words[54], words[55], words[56] = cylinders, HEADS, SECTORS_PER_TRACK
    words[57], words[58] = chs_capacity & 0xFFFF, chs_capacity >> 16
    words[60], words[61] = lba28 & 0xFFFF, lba28 >> 16
    words[64] = 0x0003  # PIO modes 3 and 4
    words[65] = words[66] = words[67] = words[68] = 120  # cycle times, ns
    words[80] = 0x007E  # ATA-1 to ATA-6
    words[83] = words[86] = 0x4000 | 1 << 12  # FLUSH CACHE supported, enabled
    words[84] = words[87] = 0x4000
    block = bytearray(b"".join(word.to_bytes(2, "little") for word in words))
    block[510] = 0xA5  # word 255: signature, then the checksum making the sum 0
    block[511] = -sum(block[:511]) & 0xFF
    return bytes(block)


def _put_string(words: list[int], first: int, length: int, text: str) -> None:
    """ATA strings: space padded, two characters a word, first one high."""
    padded = text.ljust(length).encode("ascii")
    for index in range(length // 2):
        words[first + index] = padded[2 * index] << 8 | padded[2 * index + 1]
