"""Memory-mapped devices, beside the port bus: each device registers a physical range
and sees only offsets inside it (as PortBus devices see offsets inside their ports).

What an access where there is neither RAM nor a device does is decided here, once
(`unassigned`): today it stops the run with the emulator's error, as before this bus
existed. A PC ignores such writes and reads all ones; that is the full PC's change to
make, in this one place.
"""

from collections import Counter
from typing import Protocol

from unicorn import UC_HOOK_MEM_UNMAPPED, Uc

from pvtool.machine.exits import Exit


class MmioDevice(Protocol):
    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


class MmioBus:
    """Unicorn calls back on every access to a registered range (about 0.4 us each,
    UNICORN.md): a device whose reads are frequent should be RAM with a write hook."""

    def __init__(self, uc: Uc, exits: Counter, on_error):
        self.uc = uc
        self.exits = exits
        self.on_error = on_error  # where a device's exception goes (the run loop)
        self.ranges: list[tuple[int, int, MmioDevice]] = []
        uc.hook_add(UC_HOOK_MEM_UNMAPPED, self.unassigned)

    def register(self, device: MmioDevice, base: int, size: int) -> None:
        for start, length, _ in self.ranges:
            if base < start + length and start < base + size:
                raise ValueError(f"MMIO range {base:#x}+{size:#x} overlaps {start:#x}")
        self.ranges.append((base, size, device))
        self.uc.mmio_map(base, size, self._reader(device), None, self._writer(device), None)

    def _reader(self, device: MmioDevice):
        def read(uc: Uc, offset: int, size: int, _) -> int:
            self.exits[Exit.MMIO] += 1
            try:
                return device.read(offset, size)
            except BaseException as exc:
                self.on_error(exc)
                return 0
        return read

    def _writer(self, device: MmioDevice):
        def write(uc: Uc, offset: int, size: int, value: int, _) -> None:
            self.exits[Exit.MMIO] += 1
            try:
                device.write(offset, size, value)
            except BaseException as exc:
                self.on_error(exc)
        return write

    def unassigned(self, uc: Uc, access: int, address: int, size: int, value: int,
                   _) -> bool:
        """An access to physical memory with no RAM and no device behind it: not
        handled (False), so Unicorn stops with UC_ERR_*_UNMAPPED and the run ends with
        an emulator error."""
        return False
