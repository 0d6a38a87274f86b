"""The Bochs VBE registers of QEMU 7.2's standard VGA (hw/display/vga.c,
vbe_ioport_read_data; the register numbers are Bochs's vbe.h): an index at port
0x1CE and the register it selects at 0x1CF (and again at 0x1D0), word registers
only, as QEMU's portio list decodes them (a byte access reads 0xFF and writes
nothing; a dword reads all ones).

A kernel's driver finds the adapter by the ID register (0xB0C5, the newest
interface QEMU offers; an ID write is kept only if it names one of 0xB0C0-0xB0C5)
and the video memory size in 64 KiB units (16 MiB, QEMU's default). With the
GETCAPS bit set in the enable register, the resolution and depth registers read
the largest values QEMU accepts. SeaBIOS leaves the enable register selected and
every mode register 0 (text mode), measured with guests/portscan.

Departures: there is no graphics mode: enabling VBE only keeps the value (pvtool's
screen is the text console), and QEMU's checks on written resolutions, depths and
offsets (vbe_fixup_regs) are not applied.
"""

from pvtool.machine.ports import PortBus, Wide, all_ones

VBE_PORT, VBE_PORTS, VBE_WIDTH = 0x1CE, 3, 2
INDEX, ID, ENABLE, REGISTERS, VIDEO_MEMORY_64K = 0, 0, 4, 10, 10
ID_NEWEST, ID_OLDEST = 0xB0C5, 0xB0C0
GETCAPS = 0x02
XRES, YRES, BPP = 1, 2, 3
CAPS = {XRES: 16000, YRES: 12000, BPP: 32}  # QEMU's VBE_DISPI_MAX_*
VIDEO_MEMORY = 16 << 20
INDEX_AFTER_SEABIOS = ENABLE


class BochsVbe:
    def __init__(self):
        self.index = INDEX_AFTER_SEABIOS
        self.registers = [ID_NEWEST] + [0] * (REGISTERS - 1)

    def register(self, ports: PortBus) -> None:
        ports.register(self, VBE_PORT, VBE_PORTS, width=VBE_WIDTH, wide=Wide.PORTIO)

    def read(self, offset: int, size: int) -> int:
        if size != VBE_WIDTH:
            return all_ones(size)
        return self.index if offset == INDEX else self._data()

    def write(self, offset: int, size: int, value: int) -> None:
        if size != VBE_WIDTH:
            return
        if offset == INDEX:
            self.index = value
        elif self.index == ID:
            if ID_OLDEST <= value <= ID_NEWEST:
                self.registers[ID] = value
        elif self.index < REGISTERS:
            self.registers[self.index] = value

    def _data(self) -> int:
        if self.index == VIDEO_MEMORY_64K:
            return VIDEO_MEMORY >> 16
        if self.index >= REGISTERS:
            return 0
        if self.registers[ENABLE] & GETCAPS and self.index in CAPS:
            return CAPS[self.index]
        return self.registers[self.index]
