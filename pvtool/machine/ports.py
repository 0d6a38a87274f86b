"""The I/O port bus: devices register port ranges; the run loop's IN/OUT hooks
dispatch through one table (Unicorn never privilege-checks port I/O)."""

from typing import Protocol


class PortDevice(Protocol):
    """A device sees only an offset inside its own range."""

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


class PortBus:
    """Maps each port to (device, offset, width). Unassigned ports behave as on a PC
    with nothing behind them: reads float high, writes vanish. An access wider than
    its device's registers is split into accesses of consecutive ports, lowest first,
    as the ISA bus (and QEMU) does: `inw 0x3fe` reads the UART's MSR and SCR."""

    def __init__(self):
        self._ports: dict[int, tuple[PortDevice, int, int]] = {}
        self.unassigned_accesses = 0

    def register(self, device: PortDevice, base: int, count: int, *, width: int = 4) -> None:
        """WIDTH: the widest access the device's registers take whole."""
        taken = [port for port in range(base, base + count) if port in self._ports]
        if taken:  # refuse the whole range: no half-registered device
            raise ValueError(f"port {taken[0]:#x} is already taken")
        for offset in range(count):
            self._ports[base + offset] = (device, offset, width)

    def read(self, port: int, size: int) -> int:
        entry = self._ports.get(port)
        if entry is None:
            self.unassigned_accesses += 1
            return (1 << (8 * size)) - 1
        device, offset, width = entry
        if size > width:
            parts = [self.read(port + i, width) for i in range(0, size, width)]
            return sum(part << (8 * i * width) for i, part in enumerate(parts))
        return device.read(offset, size) & ((1 << (8 * size)) - 1)

    def write(self, port: int, size: int, value: int) -> None:
        entry = self._ports.get(port)
        if entry is None:
            self.unassigned_accesses += 1
            return
        device, offset, width = entry
        if size > width:
            for i in range(0, size, width):
                self.write(port + i, width, value >> (8 * i))
            return
        device.write(offset, size, value & ((1 << (8 * size)) - 1))
