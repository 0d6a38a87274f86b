"""The VGA in its 80x25 colour text mode, as QEMU's standard VGA presents it to a
kernel booted with `-kernel`, after SeaBIOS's VGA BIOS set mode 3 and SeaBIOS and its
Multiboot option ROM printed their two lines.

The text buffer at 0xB8000 is plain RAM (a cell is a character byte then an attribute
byte): kernels read it as often as they write it, and the screen is looked at once,
when the run ends (screen.py). The registers are the VGA's index/data pairs (IBM VGA
Technical Reference): the CRT controller at 0x3D4/0x3D5 (cursor location 0x0E/0x0F,
cursor shape 0x0A/0x0B, start address 0x0C/0x0D), the sequencer at 0x3C4/0x3C5, the
graphics controller at 0x3CE/0x3CF, the attribute controller at 0x3C0/0x3C1 with its
index/data flip-flop, the miscellaneous output register (written at 0x3C2, read at
0x3CC) and input status 1 at 0x3DA. Every value a register holds at entry, and every
answer below, was read from QEMU 7.2 by guests/cgacon, which prints them on COM1.

Rules QEMU follows (hw/display/vga.c), which cgacon's probe shows: the CRT controller
ports answer at 0x3Dx only while misc output bit 0 selects colour, and at 0x3Bx only
while it selects mono (the other pair reads all ones); while CRTC register 0x11 bit 7
is set, registers 0x00-0x07 ignore writes but for bit 4 of 0x07; each read of input
status 1 flips its retrace bits (0 and 3) and puts the attribute flip-flop back on
"index"; the attribute controller reads back its index at 0x3C0, and at 0x3C1 the
register its index selects (bit 5, the palette source, ignored).

Departures: nothing is drawn (the screen is read from RAM when the run ends), so the
registers change no picture but for the start address, which says where in the buffer
the screen begins (screen.py reads from there); the cursor's shape, the character
height and the timings are kept and read back but shape nothing; the DAC (0x3C6-0x3C9) is not
modelled (it reads 0, as QEMU's did at entry, and ignores writes); writes to the
sequencer and graphics registers are kept whole (QEMU masks reserved bits); the
graphics-mode planes and 0xA0000-0xB7FFF are RAM, where QEMU's text mode maps no
memory.
"""

from pvtool.machine.firmware.platform import SEABIOS_VERSION
from pvtool.machine.ports import PortBus, Wide

TEXT_BUFFER = 0xB8000  # the colour text window (graphics register 6 selects it)
TEXT_BUFFER_SIZE = 0x8000
COLUMNS, ROWS = 80, 25
BLANK_CELL = b"\x20\x07"  # a space, light grey on black: what the BIOS clears with
# What SeaBIOS and its Multiboot option ROM print on the screen before the kernel runs,
# one row each, and where they leave the cursor.
FIRMWARE_LINES = (f"SeaBIOS (version {SEABIOS_VERSION})", "Booting from ROM...")

CRTC_COLOUR_PORT, CRTC_MONO_PORT = 0x3D4, 0x3B4
STATUS_COLOUR_PORT, STATUS_MONO_PORT = 0x3DA, 0x3BA
VGA_PORT = 0x3C0  # 0x3C0-0x3CF: attribute, misc, sequencer, DAC, graphics
VGA_PORTS = 16

# Each register file's values at entry, as cgacon read them from QEMU.
CRTC_AT_ENTRY = bytes.fromhex("5f4f50825581bf1f004f0d0e000000a09c8e8f281f96b9a3ff")
SEQUENCER_AT_ENTRY = bytes.fromhex("0300030002")
GRAPHICS_AT_ENTRY = bytes.fromhex("0000000000100e0fff")
ATTRIBUTE_AT_ENTRY = bytes.fromhex("000102030405140738393a3b3c3d3e3f0c000f0800")
# The indices SeaBIOS's last writes leave selected (the cursor's low byte, the
# graphics mode register), measured with guests/portscan.
CRTC_INDEX_AT_ENTRY, GRAPHICS_INDEX_AT_ENTRY = 0x0F, 0x05
MISC_AT_ENTRY = 0x67  # colour I/O addresses (bit 0), RAM enabled, 28 MHz clock
MISC_COLOUR = 0x01

CURSOR_HIGH, CURSOR_LOW = 0x0E, 0x0F
START_HIGH, START_LOW = 0x0C, 0x0D
CRTC_PROTECT, CRTC_PROTECT_BIT = 0x11, 0x80  # vertical retrace end, bit 7
CRTC_PROTECTED_LAST, CRTC_OVERFLOW, OVERFLOW_WRITABLE = 0x07, 0x07, 0x10
STATUS_RETRACE = 0x09  # vertical retrace and display disabled: flip on each read
ATTRIBUTE_INDEX = 0x1F  # the index bits; bit 5 (palette source) is not part of it
FLOATING = 0xFF


class RegisterFile:
    """An index register and the data registers it selects (COUNT of them, the index
    masked to fit, as QEMU keeps it)."""

    def __init__(self, count: int, at_entry: bytes):
        self.registers = bytearray(count)
        self.registers[:len(at_entry)] = at_entry
        self.index = 0

    def select(self, value: int) -> None:
        self.index = value & (len(self.registers) - 1)

    def read(self) -> int:
        return self.registers[self.index]

    def write(self, value: int) -> None:
        self.registers[self.index] = value


class CrtController(RegisterFile):
    """The CRT controller: 256 registers behind one index, 0x00-0x07 write-protected
    while register 0x11 says so."""

    def __init__(self):
        super().__init__(256, CRTC_AT_ENTRY)

    def write(self, value: int) -> None:
        if self.registers[CRTC_PROTECT] & CRTC_PROTECT_BIT and self.index <= CRTC_PROTECTED_LAST:
            if self.index == CRTC_OVERFLOW:  # its bit 4 stays writable
                old = self.registers[CRTC_OVERFLOW]
                self.registers[CRTC_OVERFLOW] = old & ~OVERFLOW_WRITABLE | value & OVERFLOW_WRITABLE
            return
        self.registers[self.index] = value

    @property
    def cursor(self) -> int:
        """The cursor location: a cell index from the start of the buffer."""
        return self.registers[CURSOR_HIGH] << 8 | self.registers[CURSOR_LOW]

    @property
    def start(self) -> int:
        """The cell the screen's top-left corner shows (hardware scrolling moves it)."""
        return self.registers[START_HIGH] << 8 | self.registers[START_LOW]


class VgaText:
    """The VGA's registers (the text buffer is RAM: firmware_screen is what the
    machine puts there at power-on; CRTC_AT_ENTRY has the cursor below it)."""

    def __init__(self):
        self.crtc = CrtController()
        self.crtc.index = CRTC_INDEX_AT_ENTRY
        self.sequencer = RegisterFile(8, SEQUENCER_AT_ENTRY)
        self.graphics = RegisterFile(16, GRAPHICS_AT_ENTRY)
        self.graphics.index = GRAPHICS_INDEX_AT_ENTRY
        self.attribute = RegisterFile(32, ATTRIBUTE_AT_ENTRY)
        self.attribute_flip = False  # False: the next 0x3C0 write is an index
        self.misc = MISC_AT_ENTRY
        self.status = 0

    def register(self, ports: PortBus) -> None:
        """QEMU registers the VGA's ports as portio lists (hw/display/vga.c)."""
        portio = {"width": 1, "wide": Wide.PORTIO}
        ports.register(self, VGA_PORT, VGA_PORTS, **portio)
        ports.register(_CrtcPorts(self, mono=False), CRTC_COLOUR_PORT, 2, **portio)
        ports.register(_CrtcPorts(self, mono=True), CRTC_MONO_PORT, 2, **portio)
        ports.register(_StatusPort(self, mono=False), STATUS_COLOUR_PORT, 1, **portio)
        ports.register(_StatusPort(self, mono=True), STATUS_MONO_PORT, 1, **portio)

    def decodes(self, mono: bool) -> bool:
        """Whether the CRT controller and status ports answer at 0x3Bx (MONO) or 0x3Dx."""
        return bool(self.misc & MISC_COLOUR) != mono

    def read_status(self) -> int:
        self.attribute_flip = False
        self.status ^= STATUS_RETRACE
        return self.status

    # -- 0x3C0-0x3CF ------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if offset == 0x0:
            return self.attribute.index
        if offset == 0x1:
            return self.attribute.registers[self.attribute.index & ATTRIBUTE_INDEX]
        if offset == 0x4:
            return self.sequencer.index
        if offset == 0x5:
            return self.sequencer.read()
        if offset == 0xC:
            return self.misc
        if offset == 0xE:
            return self.graphics.index
        if offset == 0xF:
            return self.graphics.read()
        return 0  # input status 0, the DAC, feature control: what QEMU read at entry

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0x0:
            self._write_attribute(value)
        elif offset == 0x2:
            self.misc = value
        elif offset == 0x4:
            self.sequencer.select(value)
        elif offset == 0x5:
            self.sequencer.write(value)
        elif offset == 0xE:
            self.graphics.select(value)
        elif offset == 0xF:
            self.graphics.write(value)

    def _write_attribute(self, value: int) -> None:
        """One port, two meanings: the flip-flop says whether VALUE is an index (with
        the palette source bit) or the data for the register it selected."""
        if self.attribute_flip:
            self.attribute.registers[self.attribute.index & ATTRIBUTE_INDEX] = value
        else:
            self.attribute.index = value & 0x3F
        self.attribute_flip = not self.attribute_flip


class _CrtcPorts:
    """The CRT controller's index and data ports at one of its two addresses."""

    def __init__(self, vga: VgaText, *, mono: bool):
        self.vga = vga
        self.mono = mono

    def read(self, offset: int, size: int) -> int:
        if not self.vga.decodes(self.mono):
            return FLOATING
        return self.vga.crtc.index if offset == 0 else self.vga.crtc.read()

    def write(self, offset: int, size: int, value: int) -> None:
        if not self.vga.decodes(self.mono):
            return
        if offset == 0:
            self.vga.crtc.select(value)
        else:
            self.vga.crtc.write(value)


class _StatusPort:
    """Input status 1 at one of its two addresses."""

    def __init__(self, vga: VgaText, *, mono: bool):
        self.vga = vga
        self.mono = mono

    def read(self, offset: int, size: int) -> int:
        return self.vga.read_status() if self.vga.decodes(self.mono) else FLOATING

    def write(self, offset: int, size: int, value: int) -> None:
        """The feature control register: nothing in it that pvtool models."""


def firmware_screen() -> bytes:
    """The text buffer as the kernel finds it: SeaBIOS's lines on a blank page (the
    whole 32 KiB window holds blank cells, as QEMU's did)."""
    cells = bytearray(BLANK_CELL * (TEXT_BUFFER_SIZE // 2))
    for row, line in enumerate(FIRMWARE_LINES):
        start = row * COLUMNS * 2
        cells[start:start + 2 * len(line):2] = line.encode("ascii")
    return bytes(cells)
