"""Port 0x80, the POST diagnostic port, which kernels write to wait an ISA bus cycle
(Linux's outb_p, io_delay). QEMU 7.2's PC decodes it (ioport80 in hw/i386/pc.c):
writes vanish and a read of any width reads all ones, as one access (a word read
at 0x80 does not reach the DMA page register at 0x81)."""

from pvtool.machine.ports import all_ones

DELAY_PORT = 0x80


class DelayPort:
    def read(self, offset: int, size: int) -> int:
        return all_ones(size)

    def write(self, offset: int, size: int, value: int) -> None:
        """An I/O delay: nothing to do."""
