"""The PC's two 8237 DMA controllers and their page registers, as QEMU 7.2's
i440FX PC presents them (hw/dma/i8257.c) and SeaBIOS leaves them (dma_setup: both
controllers reset, channel 4 in cascade mode and unmasked).

DMA1 serves channels 0-3 at ports 0x00-0x0F (byte registers); DMA2 serves channels
4-7 at 0xC0-0xDF, each register decoded on both ports of an even/odd pair (its
addresses and counts are in words). Per controller: a current address and count per
channel read and written a byte at a time through the byte pointer flip-flop, the
status register (request bits 4-7 and terminal counts 0-3, which a read clears),
the mask register, and the command ports: request, single mask, mode, clear
flip-flop, master clear, clear mask, write mask. Reading register 1 of the command
block returns the mask register, as QEMU's does (an 8237 has it write-only). The page
registers (0x81-0x83 and 0x87 for DMA1, 0x89-0x8B and 0x8F for DMA2) hold the top
address bits of channels 2, 3, 1, 0 (6, 7, 5, 4). The read values were measured with
guests/portscan on QEMU.

Departures: no transfer ever runs (no device of pvtool's uses ISA DMA): a channel's
current address and count stay what was written, the mode and command registers are
taken and not kept (they only shape transfers), and no terminal count is reached.
"""

from collections.abc import Callable

from pvtool.machine.ports import PortBus, Wide

DMA1_BASE, DMA2_BASE = 0x00, 0xC0
DMA1_PAGE_BASE, DMA2_PAGE_BASE = 0x80, 0x88
DMA1_SHIFT, DMA2_SHIFT = 0, 1  # DMA2 decodes each register on two ports
CHANNELS = 4
REGISTERS = 8  # channel registers, then as many command registers
PAGE_PORTS = ((1, 3), (7, 1))  # (first offset, ports): the page registers QEMU decodes
PAGE_CHANNEL = {1: 2, 2: 3, 3: 1, 7: 0}  # page port offset -> channel
ADDRESS, COUNT = 0, 1
STATUS, MASK, SINGLE_MASK, FLIP_FLOP, MASTER_CLEAR, CLEAR_MASK, WRITE_MASK = (
    0, 1, 2, 4, 5, 6, 7)
REQUEST = 1
MASK_RESET = 0xFF  # QEMU's reset sets every bit, the four channels' and the rest
CASCADE_UNMASKED = MASK_RESET & ~1  # DMA2 as SeaBIOS leaves it: channel 4 unmasked
REQUEST_BITS = 0xF0  # a status read clears the terminal counts, not the requests
CHANNEL_BITS, SET_BIT = 0x03, 0x04


class Dma8237:
    """One controller: SHIFT is how many low port bits its decoding ignores."""

    def __init__(self, shift: int, *, mask: int = MASK_RESET):
        self.shift = shift
        self.registers = [[0, 0] for _ in range(CHANNELS)]  # base [address, count]
        # QEMU reads back the current address, which takes the base address when its
        # high byte is written (i8257_init_chan); the count reads back as written.
        self.current = [0] * CHANNELS
        self.flip_flop = 0
        self.status = 0
        self.mask = mask
        self.pages = [0] * CHANNELS

    def register(self, ports: PortBus, base: int, page_base: int) -> None:
        size = REGISTERS << self.shift
        ports.register(_Registers(self, self.read_channel, self.write_channel), base, size,
                       width=1)
        ports.register(_Registers(self, self.read_command, self.write_command), base + size,
                       size, width=1)
        pages = _Pages(self)
        for first, count in PAGE_PORTS:
            ports.register(pages, page_base + first, count, width=1, wide=Wide.PORTIO,
                           first=first)

    def _toggle(self) -> int:
        """The flip-flop says which byte the next access takes: low, then high."""
        byte, self.flip_flop = self.flip_flop, self.flip_flop ^ 1
        return byte

    def read_channel(self, index: int) -> int:
        channel = index >> 1
        value = self.current[channel] if index & 1 == ADDRESS else self.registers[channel][COUNT]
        return (value >> 8 * self._toggle()) & 0xFF

    def write_channel(self, index: int, value: int) -> None:
        register = self.registers[index >> 1]
        shift = 8 * self._toggle()
        register[index & 1] = register[index & 1] & ~(0xFF << shift) | value << shift
        if shift:
            self.current[index >> 1] = register[ADDRESS]

    def read_command(self, index: int) -> int:
        if index == STATUS:
            value, self.status = self.status, self.status & REQUEST_BITS
            return value
        return self.mask if index == MASK else 0

    def write_command(self, index: int, value: int) -> None:
        channel_bit = 1 << (value & CHANNEL_BITS)
        if index == REQUEST:
            self.status &= ~(channel_bit << 4 | channel_bit)
            self.status |= channel_bit << 4 if value & SET_BIT else 0
        elif index == SINGLE_MASK:
            self.mask = self.mask | channel_bit if value & SET_BIT else self.mask & ~channel_bit
        elif index == FLIP_FLOP:
            self.flip_flop = 0
        elif index == MASTER_CLEAR:
            self.flip_flop = self.status = 0
            self.mask = MASK_RESET
        elif index == CLEAR_MASK:
            self.mask = 0
        elif index == WRITE_MASK:
            self.mask = value


class _Registers:
    """The channel block or the command block: READ and WRITE take a register index,
    the port's offset with the controller's ignored low bits dropped."""

    def __init__(self, dma: Dma8237, read: Callable[[int], int],
                 write: Callable[[int, int], None]):
        self.shift = dma.shift
        self._read, self._write = read, write

    def read(self, offset: int, size: int) -> int:
        return self._read(offset >> self.shift)

    def write(self, offset: int, size: int, value: int) -> None:
        self._write(offset >> self.shift, value)


class _Pages:
    """The page registers; an offset is the port's above the page block's base."""

    def __init__(self, dma: Dma8237):
        self.dma = dma

    def read(self, offset: int, size: int) -> int:
        return self.dma.pages[PAGE_CHANNEL[offset]]

    def write(self, offset: int, size: int, value: int) -> None:
        self.dma.pages[PAGE_CHANNEL[offset]] = value
