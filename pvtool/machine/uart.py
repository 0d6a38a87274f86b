"""A 16550 UART (COM1 at 0x3F8): the guests' console.

Transmit is immediate (the line is always ready: LSR.THRE|TEMT), so a polling driver
never waits; received bytes come from an input buffer. Registers follow the
PC16550D data sheet; with DLAB set, offsets 0 and 1 are the divisor latch.
"""

from collections.abc import Callable

COM1_BASE = 0x3F8
COM1_PORTS = 8

LSR_DATA_READY = 0x01
LSR_THR_EMPTY = 0x20
LSR_TX_EMPTY = 0x40
LCR_DLAB = 0x80
IIR_NO_INTERRUPT = 0x01
IIR_FIFO_ENABLED = 0xC0


class Uart16550:
    def __init__(self, output: Callable[[bytes], None], input_data: bytes = b""):
        self._output = output
        self._input = bytearray(input_data)
        self.ier = 0
        self.lcr = 0
        self.mcr = 0
        self.fcr = 0
        self.scratch = 0
        self.divisor = 12  # 9600 baud after reset
        self.bytes_written = 0

    def feed(self, data: bytes) -> None:
        self._input.extend(data)

    def read(self, offset: int, size: int) -> int:
        dlab = self.lcr & LCR_DLAB
        if offset == 0:
            return self.divisor & 0xFF if dlab else self._receive()
        if offset == 1:
            return self.divisor >> 8 if dlab else self.ier
        if offset == 2:
            return IIR_NO_INTERRUPT | (IIR_FIFO_ENABLED if self.fcr & 1 else 0)
        return {3: self.lcr, 4: self.mcr, 5: self._lsr(), 6: 0xB0, 7: self.scratch}[offset]

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        if offset == 0 and dlab:
            self.divisor = (self.divisor & 0xFF00) | value
        elif offset == 0:
            self._output(bytes((value,)))
            self.bytes_written += 1
        elif offset == 1 and dlab:
            self.divisor = (self.divisor & 0xFF) | value << 8
        elif offset == 1:
            self.ier = value & 0x0F
        elif offset == 2:
            self.fcr = value
        elif offset == 3:
            self.lcr = value
        elif offset == 4:
            self.mcr = value & 0x1F
        elif offset == 7:
            self.scratch = value

    def _lsr(self) -> int:
        return LSR_THR_EMPTY | LSR_TX_EMPTY | (LSR_DATA_READY if self._input else 0)

    def _receive(self) -> int:
        return self._input.pop(0) if self._input else 0
