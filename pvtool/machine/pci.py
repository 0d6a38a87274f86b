"""PCI configuration space through configuration mechanism #1 (PCI Local Bus
Specification 3.0, 3.2.2.3.2): the CONFIG_ADDRESS dword at port 0xCF8 selects a bus,
device, function and register (bit 31 enables the translation), and the four data
ports 0xCFC-0xCFF read or write that register's bytes.

Each function is 256 bytes of configuration space and a mask of the bits software may
write (QEMU keeps the same pair, and so does every PCI model: the header's read-only
fields are the device's identity). A BAR is sized the way kernels size it: all ones
written, the mask read back, so its writable bits are those above its size.

Departures: only bus 0 exists; the status register's write-one-to-clear bits are read
only; a BAR or a decode bit that software moves changes nothing but the register (no
device here decodes its BARs: the regions stay where SeaBIOS put them, unmapped).
"""

from dataclasses import dataclass, field

CONFIG_ADDRESS_PORT, CONFIG_DATA_PORT, CONFIG_DATA_PORTS = 0xCF8, 0xCFC, 4
CONFIG_ADDRESS_HIGH_PORT = 0xCFA  # the latch's upper ports, past the reset control's
ADDRESS_AFTER_SEABIOS = 0x8000_005C  # the host bridge's PAM registers
CONFIG_SPACE = 256
ENABLE = 0x80000000
ABSENT = 0xFFFFFFFF  # what a read of a function nobody answers floats to

VENDOR_ID, DEVICE_ID, COMMAND, STATUS, REVISION, CLASS_CODE = 0x00, 0x02, 0x04, 0x06, 0x08, 0x09
CACHE_LINE_SIZE, LATENCY_TIMER, HEADER_TYPE = 0x0C, 0x0D, 0x0E
BAR0, ROM_ADDRESS = 0x10, 0x30
SUBSYSTEM_VENDOR_ID, SUBSYSTEM_ID = 0x2C, 0x2E
INTERRUPT_LINE, INTERRUPT_PIN = 0x3C, 0x3D
HEADER_MULTIFUNCTION = 0x80

# Command bits software may change (3.0, 6.2.2): I/O, memory, bus master, parity error
# response, SERR# enable, interrupt disable.
COMMAND_WRITABLE = 0x0547
BAR_IO, BAR_PREFETCH = 0x1, 0x8
ROM_ENABLE = 0x1


@dataclass(frozen=True)
class Bar:
    """A base address register: its index (0-5), its size in bytes (a power of two),
    where firmware put it, and whether it is I/O space or prefetchable memory."""

    index: int
    size: int
    address: int
    io: bool = False
    prefetchable: bool = False

    @property
    def flags(self) -> int:
        if self.io:
            return BAR_IO
        return BAR_PREFETCH if self.prefetchable else 0


@dataclass
class PciFunction:
    """One function's configuration space: the bytes and the mask of writable bits.
    Built from the header's fields; `registers` are device-specific (offset: (width,
    value)) and `writable` their writable bits (offset: (width, mask))."""

    slot: int
    function: int
    vendor: int
    device: int
    class_code: int
    revision: int = 0
    header_type: int = 0
    command: int = 0
    status: int = 0
    subsystem: tuple[int, int] = (0, 0)
    interrupt: tuple[int, int] = (0, 0)  # (line, pin)
    bars: tuple[Bar, ...] = ()
    rom: Bar | None = None
    registers: dict[int, tuple[int, int]] = field(default_factory=dict)
    writable: dict[int, tuple[int, int]] = field(default_factory=dict)
    config: bytearray = field(init=False, repr=False)  # the 256 bytes
    wmask: bytearray = field(init=False, repr=False)  # their bits software may write

    def __post_init__(self):
        self.config = bytearray(CONFIG_SPACE)
        self.wmask = bytearray(CONFIG_SPACE)
        self._header()
        for offset, (width, value) in self.registers.items():
            _put(self.config, offset, width, value)
        for offset, (width, mask) in self.writable.items():
            _put(self.wmask, offset, width, mask)

    def _header(self) -> None:
        for offset, width, value in (
                (VENDOR_ID, 2, self.vendor), (DEVICE_ID, 2, self.device),
                (COMMAND, 2, self.command), (STATUS, 2, self.status),
                (REVISION, 1, self.revision), (CLASS_CODE, 3, self.class_code),
                (HEADER_TYPE, 1, self.header_type),
                (SUBSYSTEM_VENDOR_ID, 2, self.subsystem[0]),
                (SUBSYSTEM_ID, 2, self.subsystem[1]),
                (INTERRUPT_LINE, 1, self.interrupt[0]),
                (INTERRUPT_PIN, 1, self.interrupt[1])):
            _put(self.config, offset, width, value)
        for offset, width, mask in ((COMMAND, 2, COMMAND_WRITABLE),
                                    (CACHE_LINE_SIZE, 2, 0xFFFF),
                                    (INTERRUPT_LINE, 1, 0xFF)):
            _put(self.wmask, offset, width, mask)
        for bar in self.bars:
            self._decode(BAR0 + 4 * bar.index, bar, bar.flags)
        if self.rom is not None:
            self._decode(ROM_ADDRESS, self.rom, 0)
            self.wmask[ROM_ADDRESS] |= ROM_ENABLE

    def _decode(self, offset: int, bar: Bar, flags: int) -> None:
        _put(self.config, offset, 4, bar.address | flags)
        low_bits = 0x3 if bar.io else 0xF
        _put(self.wmask, offset, 4, ~(bar.size - 1) & ~low_bits & 0xFFFFFFFF)

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.config[offset:offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        """Bytes past the end of the space (an unaligned access at 0xFF) go nowhere."""
        for i in range(min(size, CONFIG_SPACE - offset)):
            byte, mask = (value >> (8 * i)) & 0xFF, self.wmask[offset + i]
            self.config[offset + i] = (self.config[offset + i] & ~mask) | (byte & mask)


def _put(space: bytearray, offset: int, width: int, value: int) -> None:
    space[offset:offset + width] = value.to_bytes(width, "little")


class PciHost:
    """The host bridge's configuration mechanism: the address latch (port 0xCF8,
    written by dword accesses only, as QEMU's i440FX decodes it) and the data window
    (0xCFC-0xCFF). The latch holds what SeaBIOS last selected (measured with
    guests/portscan)."""

    def __init__(self, functions: list[PciFunction]):
        self.functions = {(f.slot, f.function): f for f in functions}
        self.address = ADDRESS_AFTER_SEABIOS
        self.address_port = _AddressPort(self)

    def _target(self, offset: int) -> tuple[PciFunction | None, int]:
        """The function and register the latch selects (None when disabled, another
        bus, or nobody there), the data port's OFFSET added to the register."""
        address = self.address
        if not address & ENABLE or (address >> 16) & 0xFF:
            return None, 0
        slot, function = (address >> 11) & 0x1F, (address >> 8) & 0x7
        return self.functions.get((slot, function)), (address & 0xFC) + offset

    def read(self, offset: int, size: int) -> int:
        target, register = self._target(offset)
        if target is None:
            return ABSENT & ((1 << (8 * size)) - 1)
        return target.read(register, size)

    def write(self, offset: int, size: int, value: int) -> None:
        target, register = self._target(offset)
        if target is not None:
            target.write(register, size, value)


class _AddressPort:
    """Ports 0xCF8-0xCFB but 0xCF9 (the reset control register's): only a whole dword
    at 0xCF8 writes the latch, but every read, at any of these ports and of any width,
    reads the latch's low bytes, as QEMU's pci_host_config_read answers them all."""

    def __init__(self, host: PciHost):
        self.host = host

    def read(self, offset: int, size: int) -> int:
        return self.host.address

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 4 and offset == 0:
            self.host.address = value
