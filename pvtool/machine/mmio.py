"""Memory-mapped devices, beside the port bus: each device registers a physical range
and sees only offsets inside it (as PortBus devices see offsets inside their ports).

What an access where there is neither RAM nor a device does is decided here, once
(`unassigned`). By default it stops the run with the emulator's error (the
hypervisor's modes keep that: a PV guest has no bus to float). The PC of native mode
calls `open_bus()`: from then on a read or write there maps the whole gap around it
(between the mappings either side, inside its 4 GiB-aligned window) as one OpenBus
region, which reads 0 and ignores writes, as QEMU 7.2's unassigned memory does
(guests/pcprobe measured 0, not all ones, from 128 MiB to the HPET's neighbourhood),
and the run goes on.

Why whole gaps: every map makes Unicorn rebuild its memory layout, so mapping a page
at a time made a guest sweeping unassigned memory cost O(pages^2) inside one hook,
past --timeout and --max-insns (the image fuzzer's run-native-hang images). A gap is
mapped once; after that an access costs one MMIO callback, and a sweep of all 4 GiB
costs at most one map per gap. A device registered later over open bus takes its
place: the open-bus block under it is unmapped and mapped again, around the device,
on its next access.

Departures: fetching an instruction from unassigned memory still stops the run with
the emulator's error.
"""

from collections import Counter
from typing import Protocol

from unicorn import UC_HOOK_MEM_UNMAPPED, UC_MEM_FETCH_UNMAPPED, Uc

from pvtool.machine.exits import Exit

WINDOW = 1 << 32  # an open-bus block never crosses a 4 GiB boundary


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
        self.open_blocks: list[tuple[int, int]] = []  # (base, size) mapped as open bus
        uc.hook_add(UC_HOOK_MEM_UNMAPPED, hook(self.unassigned, "unassigned memory"))

    def register(self, device: MmioDevice, base: int, size: int) -> None:
        for start, length, _ in self.ranges:
            if base < start + length and start < base + size:
                raise ValueError(f"MMIO range {base:#x}+{size:#x} overlaps {start:#x}")
        self._unmap_open_bus(base, size)
        self.ranges.append((base, size, device))
        self._map(device, base, size)

    def _map(self, device: MmioDevice, base: int, size: int) -> None:
        self.uc.mmio_map(base, size, self.hook(self._reader(device), "mmio hook"), None,
                         self.hook(self._writer(device), "mmio hook"), None)

    def _unmap_open_bus(self, base: int, size: int) -> None:
        """Open-bus blocks overlapping BASE+SIZE unmapped: a device goes there."""
        for block in [b for b in self.open_blocks if base < b[0] + b[1] and b[0] < base + size]:
            self.uc.mem_unmap(*block)
            self.open_blocks.remove(block)

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
        UC_ERR_*_UNMAPPED and the run ends with an emulator error. Otherwise the gap
        becomes open bus and Unicorn retries the access (True)."""
        if self._open_bus is None or access == UC_MEM_FETCH_UNMAPPED:
            return False
        try:
            base, length = self._gap(address, size)
            self._map(self._open_bus, base, length)
            self.open_blocks.append((base, length))
        except BaseException as exc:
            self.on_error(exc)
            return False
        return True

    def _gap(self, address: int, size: int) -> tuple[int, int]:
        """The unmapped block (base, size) an access of SIZE bytes at ADDRESS reached:
        its first unmapped byte's gap between mapped regions, clipped to its 4 GiB
        window. An access straddling a mapping's end reached the gap after it."""
        regions = [(begin, last + 1) for begin, last, _ in self.uc.mem_regions()]
        probe = address
        for begin, end in regions:
            if begin <= probe < end:
                probe = address + size - 1
        low = probe & -WINDOW
        high = low + WINDOW
        for begin, end in regions:
            if begin <= probe < end:
                raise ValueError(f"access at {address:#x}+{size} is mapped, yet Unicorn "
                                 "called it unmapped")
            if end <= probe:
                low = max(low, end)
            else:
                high = min(high, begin)
        return low, high - low
