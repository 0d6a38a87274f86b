"""A 16550 UART (COM1 at 0x3F8, IRQ 4): the guests' console.

Transmit is immediate (the line is always ready: LSR.THRE|TEMT), so a polling driver
never waits; received bytes come from an input buffer. Registers follow the
PC16550D data sheet; with DLAB set, offsets 0 and 1 are the divisor latch.

Interrupts are QEMU's (hw/char/serial.c, serial_update_irq): IIR names the highest
pending cause that IER enables, received data available (0x04) before transmitter
holding register empty (0x02). THR empty becomes pending when ETBEI is enabled with the
THR empty and after every byte sent, and stops when IIR is read showing it or THR is
written. The IRQ line is driven on every update, as QEMU raises it again (an I/O APIC
edge input delivers each time). Departures, QEMU's too: MCR OUT2 does not gate the IRQ
line; there are no line status, timeout or modem status interrupts.
"""

from collections.abc import Callable

COM1_BASE = 0x3F8
COM1_PORTS = 8

LSR_DATA_READY = 0x01
LSR_THR_EMPTY = 0x20
LSR_TX_EMPTY = 0x40
LCR_DLAB = 0x80
IIR_NO_INTERRUPT = 0x01
IIR_THR_EMPTY = 0x02
IIR_RECEIVED_DATA = 0x04
IIR_FIFO_ENABLED = 0xC0
IER_RECEIVED_DATA = 0x01
IER_THR_EMPTY = 0x02
MSR_IDLE = 0xB0  # MSR with DCD, DSR and CTS set, as QEMU's unconnected line reads


class Uart16550:
    def __init__(self, output: Callable[[bytes], None], input_data: bytes = b"",
                 irq: Callable[[bool], None] = lambda level: None):
        self._output = output
        self._input = bytearray(input_data)
        self._irq = irq  # drives the UART's interrupt line
        self.thr_interrupt = False  # QEMU's thr_ipending
        self._line = False
        self.ier = 0
        self.lcr = 0
        self.mcr = 0
        self.fcr = 0
        self.scratch = 0
        self.divisor = 12  # 9600 baud after reset
        self.bytes_written = 0
        self._readers = (self._read_data, self._read_ier, self._read_iir, lambda: self.lcr,
                         lambda: self.mcr, self._lsr, lambda: MSR_IDLE, lambda: self.scratch)
        self._writers = (self._write_data, self._write_ier_or_divisor, self._write_fcr,
                         self._write_lcr, self._write_mcr, self._ignore, self._ignore,
                         self._write_scratch)

    def feed(self, data: bytes) -> None:
        self._input.extend(data)
        self._update_irq()

    def read(self, offset: int, size: int) -> int:
        return self._readers[offset]()

    def write(self, offset: int, size: int, value: int) -> None:
        self._writers[offset](value & 0xFF)

    # -- the registers, by offset (a polling guest reads LSR and SCR in a loop) ----
    def _read_data(self) -> int:
        return self.divisor & 0xFF if self.lcr & LCR_DLAB else self._receive()

    def _read_ier(self) -> int:
        return self.divisor >> 8 if self.lcr & LCR_DLAB else self.ier

    def _write_data(self, value: int) -> None:
        if self.lcr & LCR_DLAB:
            self.divisor = (self.divisor & 0xFF00) | value
        else:
            self._transmit(value)

    def _write_ier_or_divisor(self, value: int) -> None:
        if self.lcr & LCR_DLAB:
            self.divisor = (self.divisor & 0xFF) | value << 8
        else:
            self._write_ier(value)

    def _write_fcr(self, value: int) -> None:
        self.fcr = value

    def _write_lcr(self, value: int) -> None:
        self.lcr = value

    def _write_mcr(self, value: int) -> None:
        self.mcr = value & 0x1F

    def _write_scratch(self, value: int) -> None:
        self.scratch = value

    def _ignore(self, value: int) -> None:
        """LSR and MSR are read-only."""

    def _lsr(self) -> int:
        return LSR_THR_EMPTY | LSR_TX_EMPTY | (LSR_DATA_READY if self._input else 0)

    def _receive(self) -> int:
        byte = self._input.pop(0) if self._input else 0
        self._update_irq()
        return byte

    def _transmit(self, value: int) -> None:
        """The byte goes out at once: THR empties again, a new THRE interrupt. With
        IER clear no cause is ever pending and the line stays low (_update_irq), so a
        polled console skips the updates."""
        polled = not self.ier
        if not polled:
            self.thr_interrupt = False
            self._update_irq()
        self._output(bytes((value,)))
        self.bytes_written += 1
        self.thr_interrupt = True
        if not polled:
            self._update_irq()

    def _write_ier(self, value: int) -> None:
        changed = (self.ier ^ value) & 0x0F
        self.ier = value & 0x0F
        if changed & IER_THR_EMPTY:
            self.thr_interrupt = bool(self.ier & IER_THR_EMPTY)  # THR is always empty
        if changed:
            self._update_irq()

    def _read_iir(self) -> int:
        cause = self.interrupt_cause()
        if cause == IIR_THR_EMPTY:
            self.thr_interrupt = False
            self._update_irq()
        return cause | (IIR_FIFO_ENABLED if self.fcr & 1 else 0)

    def interrupt_cause(self) -> int:
        """IIR's bits 0-3: the highest-priority enabled cause, or none."""
        if self.ier & IER_RECEIVED_DATA and self._input:
            return IIR_RECEIVED_DATA
        if self.ier & IER_THR_EMPTY and self.thr_interrupt:
            return IIR_THR_EMPTY
        return IIR_NO_INTERRUPT

    def _update_irq(self) -> None:
        """Raise the line whenever a cause is pending; lower it only if it was high
        (a polled console costs nothing)."""
        level = self.interrupt_cause() != IIR_NO_INTERRUPT
        if level or self._line:
            self._irq(level)
        self._line = level
