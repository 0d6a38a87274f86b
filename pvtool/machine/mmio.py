"""Memory-mapped devices, beside the port bus: each device registers a physical range
and sees only offsets inside it (as PortBus devices see offsets inside their ports).

What an access where there is neither RAM nor a device does is decided here, once
(`unassigned`). By default it stops the run with the emulator's error (the
hypervisor's modes keep that: a PV guest has no bus to float). The PC of native mode
calls `open_bus()`: from then on a read or write there maps its page lazily as an
OpenBus region, which reads 0 and ignores writes, as QEMU 7.2's unassigned memory
does (guests/pcprobe measured 0, not all ones, from 128 MiB to the HPET's
neighbourhood), and the run goes on.

Departures: fetching an instruction from unassigned memory still stops the run with
the emulator's error.
"""

from collections import Counter
from typing import Protocol

from unicorn import UC_HOOK_MEM_UNMAPPED, UC_MEM_FETCH_UNMAPPED, Uc

from pvtool.machine.exits import Exit
from pvtool.x86.paging import PAGE_SIZE


class MmioDevice(Protocol):
    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


class OpenBus:
    """Where nothing answers: reads 0, writes vanish (QEMU's unassigned_mem_ops)."""

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        pass


class MmioBus:
    """Unicorn calls back on every access to a registered range (about 0.4 us each,
    UNICORN.md): a device whose reads are frequent should be RAM with a write hook."""

    def __init__(self, uc: Uc, exits: Counter, on_error, hook=lambda callback, name: callback):
        self.uc = uc
        self.exits = exits
        self.on_error = on_error  # where a device's exception goes (the run loop)
        self.hook = hook  # how the machine installs a callback (timed by --profile)
        self.ranges: list[tuple[int, int, MmioDevice]] = []
        self._open_bus: OpenBus | None = None
        uc.hook_add(UC_HOOK_MEM_UNMAPPED, hook(self.unassigned, "unassigned memory"))

    def register(self, device: MmioDevice, base: int, size: int) -> None:
        for start, length, _ in self.ranges:
            if base < start + length and start < base + size:
                raise ValueError(f"MMIO range {base:#x}+{size:#x} overlaps {start:#x}")
        self.ranges.append((base, size, device))
        self.uc.mmio_map(base, size, self.hook(self._reader(device), "mmio hook"), None,
                         self.hook(self._writer(device), "mmio hook"), None)

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

    def open_bus(self) -> None:
        """Unassigned memory answers as on a PC from now on (see the module's doc)."""
        self._open_bus = OpenBus()

    def unassigned(self, uc: Uc, access: int, address: int, size: int, value: int,
                   _) -> bool:
        """An access to physical memory with no RAM and no device behind it. Without
        an open bus, or for a fetch, not handled (False): Unicorn stops with
        UC_ERR_*_UNMAPPED and the run ends with an emulator error. Otherwise the page
        becomes open bus and Unicorn retries the access (True)."""
        if self._open_bus is None or access == UC_MEM_FETCH_UNMAPPED:
            return False
        try:
            self.register(self._open_bus, address & -PAGE_SIZE, PAGE_SIZE)
        except BaseException as exc:
            self.on_error(exc)
            return False
        return True
