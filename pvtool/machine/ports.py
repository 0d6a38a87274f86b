"""The I/O port bus: devices register port ranges; the run loop's IN/OUT hooks
dispatch through one table (Unicorn never privilege-checks port I/O)."""

from enum import Enum
from typing import NamedTuple, Protocol


class PortDevice(Protocol):
    """A device sees only an offset inside its own range."""

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


class Wide(Enum):
    """What an access wider than a device's registers reaches. QEMU answers it by how
    the device registered its ports (softmmu/memory.c, softmmu/ioport.c), and a kernel
    can see the difference: guests/portscan reads every port at each width."""

    NEXT_PORTS = "next ports"  # consecutive ports, lowest first, whoever owns them
    # A QEMU portio list (isa_register_portio_list): a word is split only inside the
    # range, a byte past its end reads 0xFF and is not written; a dword reads all ones
    # and writes nothing.
    PORTIO = "portio"
    # A one-port QEMU memory region with byte-wide callbacks: every byte of the access
    # reads (or writes) that one register again.
    SAME_REGISTER = "same register"


PORTIO_SPLITS = 2  # the widest access QEMU's portio_read splits into bytes
PORT_COUNT = 0x10000  # the x86 I/O address space
WIDEST_ACCESS = 4  # in/out eax: a wide access split into ports may run this far past 0xFFFF


class _Entry(NamedTuple):
    device: PortDevice
    offset: int
    end: int  # the offset just past the range
    width: int
    wide: Wide


class PortBus:
    """Maps each port to its device and offset. Unassigned ports behave as on a PC
    with nothing behind them: reads float high, writes vanish; an access that starts
    at one reads all ones at every width, as on QEMU. An access wider than its
    device's registers goes where the device's Wide says: by default it is split into
    accesses of consecutive ports, lowest first, as the ISA bus does: `inw 0x3fe`
    reads the UART's MSR and SCR.

    Every port exit comes through here (a million a second from a polling guest), so
    the map is a list indexed by port, and an access no wider than its device's
    registers goes straight to the device: one index, one call, one mask."""

    def __init__(self):
        self._ports: list[_Entry | None] = [None] * (PORT_COUNT + WIDEST_ACCESS)
        self.unassigned_accesses = 0

    def register(self, device: PortDevice, base: int, count: int, *, width: int = 4,
                 wide: Wide = Wide.NEXT_PORTS, first: int = 0) -> None:
        """WIDTH: the widest access the device's registers take whole. FIRST: the
        offset the device sees at BASE (a device whose ports have a gap registers
        each run at its own offsets)."""
        taken = [port for port in range(base, base + count) if self._ports[port]]
        if taken:  # refuse the whole range: no half-registered device
            raise ValueError(f"port {taken[0]:#x} is already taken")
        for index in range(count):
            self._ports[base + index] = _Entry(device, first + index, first + count, width,
                                               wide)

    def read(self, port: int, size: int) -> int:
        entry = self._ports[port]
        if entry is not None and size <= entry.width:
            return entry.device.read(entry.offset, size) & MASKS[size]
        return self._read_other(port, size, entry)

    def write(self, port: int, size: int, value: int) -> None:
        entry = self._ports[port]
        if entry is not None and size <= entry.width:
            entry.device.write(entry.offset, size, value & MASKS[size])
        else:
            self._write_other(port, size, value, entry)

    def _read_other(self, port: int, size: int, entry: _Entry | None) -> int:
        """A read of nothing, or wider than the device's registers."""
        if entry is None:
            self.unassigned_accesses += 1
            return all_ones(size)
        if entry.wide is Wide.PORTIO and size > PORTIO_SPLITS:
            return all_ones(size)
        parts = [self._read_part(port, entry, i) for i in range(0, size, entry.width)]
        return sum(part << (8 * i * entry.width) for i, part in enumerate(parts))

    def _write_other(self, port: int, size: int, value: int, entry: _Entry | None) -> None:
        if entry is None:
            self.unassigned_accesses += 1
            return
        if entry.wide is Wide.PORTIO and size > PORTIO_SPLITS:
            return
        for i in range(0, size, entry.width):
            self._write_part(port, entry, i, value >> (8 * i))

    def _read_part(self, port: int, entry: _Entry, skip: int) -> int:
        """The part of a wide read SKIP bytes in."""
        if entry.wide is Wide.NEXT_PORTS:
            return self.read(port + skip, entry.width)
        if entry.wide is Wide.SAME_REGISTER:
            return entry.device.read(entry.offset, entry.width) & all_ones(entry.width)
        if entry.offset + skip >= entry.end:
            return all_ones(entry.width)
        return entry.device.read(entry.offset + skip, entry.width) & all_ones(entry.width)

    def _write_part(self, port: int, entry: _Entry, skip: int, value: int) -> None:
        part = value & all_ones(entry.width)
        if entry.wide is Wide.NEXT_PORTS:
            self.write(port + skip, entry.width, part)
        elif entry.wide is Wide.SAME_REGISTER:
            entry.device.write(entry.offset, entry.width, part)
        elif entry.offset + skip < entry.end:
            entry.device.write(entry.offset + skip, entry.width, part)


def all_ones(size: int) -> int:
    """What a read of SIZE bytes from nothing returns."""
    return (1 << (8 * size)) - 1


MASKS = tuple(all_ones(size) for size in range(9))  # all_ones(SIZE), looked up
