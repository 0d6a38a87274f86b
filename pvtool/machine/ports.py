"""The I/O port bus: devices register port ranges; the run loop's IN/OUT hooks
dispatch through one table (Unicorn never privilege-checks port I/O)."""

from collections.abc import Callable
from typing import Protocol


class PortDevice(Protocol):
    """A device sees only an offset inside its own range."""

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


class PortBus:
    """Maps each port to (device, offset). Unassigned ports behave as on a PC with
    nothing behind them: reads float high, writes vanish."""

    def __init__(self):
        self._ports: dict[int, tuple[PortDevice, int]] = {}
        self.unassigned_accesses = 0
        self.on_access: Callable[[int, bool], None] | None = None

    def register(self, device: PortDevice, base: int, count: int) -> None:
        taken = [port for port in range(base, base + count) if port in self._ports]
        if taken:  # refuse the whole range: no half-registered device
            raise ValueError(f"port {taken[0]:#x} is already taken")
        for offset in range(count):
            self._ports[base + offset] = (device, offset)

    def read(self, port: int, size: int) -> int:
        entry = self._ports.get(port)
        if entry is None:
            self.unassigned_accesses += 1
            return (1 << (8 * size)) - 1
        device, offset = entry
        return device.read(offset, size) & ((1 << (8 * size)) - 1)

    def write(self, port: int, size: int, value: int) -> None:
        entry = self._ports.get(port)
        if entry is None:
            self.unassigned_accesses += 1
            return
        device, offset = entry
        device.write(offset, size, value & ((1 << (8 * size)) - 1))
