"""QEMU's firmware configuration device (fw_cfg) on the PC's ports, as QEMU 7.2's
i440FX machine booting a Multiboot kernel with -kernel presents it (QEMU's
docs/specs/fw_cfg.txt describes the interface; the values were measured with
guests/probecfg).

A 16-bit write to the selector port (0x510) picks an item and rewinds it; each byte
read from the data port (0x511, or a byte read of 0x510) returns the next byte, and 0
past the item's end or for a selector no item may have. Selectors are 14 bits, the
top bit choosing the x86's own items and the write-channel bit ignored. Items from
0x20 on are files, listed by the directory item (0x19) in name order, numbers
big-endian. The DMA address register (0x514-0x51b) reads "QEMU CFG"; writing a
descriptor's address to it, high half first and big-endian, runs one transfer: the
device reads the descriptor, selects, reads (zeros past the end), skips or refuses
to write as its control word says, and writes 0 or the error bit back into it.

Departures: the ACPI blobs (firmware/acpi_blobs.py) hold pvtool's DSDT, not QEMU's
(firmware/acpi.py says why); the rest of them, the RSDP and the table-loader script
are QEMU's bytes. The option ROMs (genroms/) are a ROM header of QEMU's size and zeros, never
QEMU's code. Accesses QEMU's device refuses (a 16-bit read, a 32-bit selector write)
were not measured: reads give all ones, writes are dropped. A DMA buffer reaching
past RAM sets the error bit, as QEMU does in the PCI hole, but pvtool writes none of
it, and also fails where QEMU has a device (the APICs, the flash); a descriptor
outside RAM ends the run, as the guest's own access would.
"""

import struct
from dataclasses import dataclass

from pvtool.image.multiboot import INFO_FIELDS, MEMORY_AVAILABLE, MEMORY_RESERVED
from pvtool.machine.cpuid import CpuModel
from pvtool.machine.firmware import smbios
from pvtool.machine.firmware.acpi import SLEEP_STATES
from pvtool.machine.firmware.acpi_blobs import acpi_files
from pvtool.machine.hpet import BLOCK_ID as HPET_BLOCK_ID
from pvtool.machine.hpet import HPET_BASE
from pvtool.machine.memory import GuestMemory
from pvtool.machine.ports import PortBus

SELECTOR_PORT, SELECTOR_PORTS = 0x510, 2  # the selector, then the data port
DMA_PORT, DMA_PORTS = 0x514, 8
SIGNATURE, DMA_SIGNATURE = b"QEMU", b"QEMU CFG"
FEATURE_TRADITIONAL, FEATURE_DMA = 0x1, 0x2

# Selectors (QEMU's include/standard-headers/linux/qemu_fw_cfg.h).
SIGNATURE_KEY, ID, UUID, RAM_SIZE, NOGRAPHIC, NB_CPUS = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05
KERNEL_ADDR, KERNEL_SIZE, INITRD_ADDR, INITRD_SIZE = 0x07, 0x08, 0x0A, 0x0B
NUMA, BOOT_MENU, MAX_CPUS, KERNEL_ENTRY, KERNEL_DATA, INITRD_DATA = (
    0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12)
FILE_DIR, FILE_FIRST, FILE_SLOTS = 0x19, 0x20, 0x20
ARCH_LOCAL, ENTRY_MASK = 0x8000, 0x3FFF
IRQ0_OVERRIDE, HPET = 0x8002, 0x8004
FILE_ENTRY = struct.Struct(">IHH56s")  # size, select, reserved, name

# DMA (fw_cfg.txt, "FWCfgDmaAccess"): control, length, address, all big-endian.
DMA_ACCESS = struct.Struct(">IIQ")
DMA_ERROR, DMA_READ, DMA_SKIP, DMA_SELECT, DMA_WRITE = 0x01, 0x02, 0x04, 0x08, 0x10
DMA_HIGH_OFFSET, DMA_LOW_OFFSET = 0, 4

CPUS = 1
E820_ENTRY = struct.Struct("<QQI")
# hw/timer/hpet.c: the firmware's HPET list (count, then 8 entries of block ID,
# address, minimum tick, page protection); the minimum tick reads 0 on QEMU 7.2.
HPET_ENTRY, HPET_SLOTS = struct.Struct("<IQHB"), 8
BOOT_FAIL_WAIT = 0xFFFFFFFF  # -1: SeaBIOS never reboots after a failed boot
# etc/system-states: per S0..S5, bit 7 "enabled" and the sleep type (S1, S2: none).
STATE_ENABLED = 0x80
ROM_BLOCK = 512
KVMVAPIC_ROM, KVMVAPIC_ROM_SIZE = "kvmvapic.bin", 0x2400
MULTIBOOT_ROM, MULTIBOOT_ROM_SIZE = "multiboot_dma.bin", 0x400
# QEMU's copy of the Multiboot information stops after the VBE fields, and leaves
# what its option ROM finds out at boot (the memory sizes, the map's length) zero.
QEMU_INFO_SIZE = 0x58
FILLED_AT_BOOT = ("mem_lower", "mem_upper", "mmap_length")


@dataclass(frozen=True)
class KernelFacts:
    """What -kernel hands the firmware: the image from its lowest address with the
    information's extras and the modules after it, and the information structure."""

    address: int
    entry: int
    image: bytes
    info_addr: int
    info: bytes


def option_rom(size: int) -> bytes:
    """A ROM image: signature 55 AA and its length in 512-byte blocks, then zeros."""
    return (b"\x55\xaa" + bytes([size // ROM_BLOCK])).ljust(size, b"\0")


def system_states() -> bytes:
    states = [STATE_ENABLED, 0, 0]
    states += [STATE_ENABLED | SLEEP_STATES[f"\\_S{n}"][0] for n in (3, 4, 5)]
    return bytes(states)


def smbios_files(ram_size: int, cpu: CpuModel) -> dict[str, bytes]:
    """The structures QEMU hands SeaBIOS (all but the BIOS's own type 0), and their
    entry point with the address and checksums SeaBIOS fills in left zero."""
    table = smbios.structures(ram_size, cpu)[1:]
    anchor = bytearray(smbios.entry_point(0, table))
    anchor[smbios.ENTRY_CHECKSUM] = 0
    anchor[smbios.INTERMEDIATE + smbios.INTERMEDIATE_CHECKSUM] = 0
    return {"etc/smbios/smbios-anchor": bytes(anchor),
            "etc/smbios/smbios-tables": b"".join(table)}


def hpet_list() -> bytes:
    entry = HPET_ENTRY.pack(HPET_BLOCK_ID, HPET_BASE, 0, 0)
    return bytes([1]) + entry + bytes(HPET_ENTRY.size * (HPET_SLOTS - 1))


def machine_items(ram_size: int) -> dict[int, bytes]:
    """The items of the machine itself, before a kernel is loaded."""
    return {
        SIGNATURE_KEY: SIGNATURE,
        ID: struct.pack("<I", FEATURE_TRADITIONAL | FEATURE_DMA),
        UUID: bytes(16),
        RAM_SIZE: struct.pack("<Q", ram_size),
        NOGRAPHIC: struct.pack("<H", 0),
        NB_CPUS: struct.pack("<H", CPUS),
        NUMA: bytes(8 * (1 + CPUS)),  # no nodes, then each CPU's node
        BOOT_MENU: struct.pack("<H", 0),
        MAX_CPUS: struct.pack("<H", CPUS),
        IRQ0_OVERRIDE: struct.pack("<I", 1),  # the PIT reaches the I/O APIC's input 2
        HPET: hpet_list(),
    }


def machine_files(ram_size: int, cpu: CpuModel) -> dict[str, bytes]:
    return {
        "bios-geometry": b"",
        **acpi_files(),
        "etc/boot-fail-wait": struct.pack("<I", BOOT_FAIL_WAIT),
        "etc/e820": b"".join(E820_ENTRY.pack(*entry) for entry in (  # QEMU's order
            *((base, length, MEMORY_RESERVED) for base, length in cpu.reserved_ranges),
            (0, ram_size, MEMORY_AVAILABLE))),
        **smbios_files(ram_size, cpu),
        "etc/system-states": system_states(),
        "etc/tpm/log": b"",
        f"genroms/{KVMVAPIC_ROM}": option_rom(KVMVAPIC_ROM_SIZE),
    }


class FwCfg:
    """The selector and data ports, and the items they read."""

    def __init__(self, ram_size: int, cpu: CpuModel):
        self.ram_size = ram_size
        self.items = machine_items(ram_size)
        self.files = machine_files(ram_size, cpu)
        self.selected: bytes | None = None
        self.offset = 0

    def register(self, ports: PortBus, memory: GuestMemory) -> None:
        """The selector and data ports, and the DMA address register beside them."""
        ports.register(self, SELECTOR_PORT, SELECTOR_PORTS)
        ports.register(FwCfgDma(self, memory, self.ram_size), DMA_PORT, DMA_PORTS)

    def load_kernel(self, kernel: KernelFacts) -> None:
        """The items and files QEMU's Multiboot support adds (hw/i386/multiboot.c)."""
        info = bytearray(kernel.info[:QEMU_INFO_SIZE])
        for name in FILLED_AT_BOOT:
            struct.pack_into("<I", info, INFO_FIELDS[name], 0)
        self.items |= {
            KERNEL_ADDR: struct.pack("<I", kernel.address),
            KERNEL_SIZE: struct.pack("<I", len(kernel.image)),
            KERNEL_DATA: kernel.image,
            KERNEL_ENTRY: struct.pack("<I", kernel.entry),
            INITRD_ADDR: struct.pack("<I", kernel.info_addr),
            INITRD_SIZE: struct.pack("<I", len(info)),
            INITRD_DATA: bytes(info),
        }
        self.files[f"genroms/{MULTIBOOT_ROM}"] = option_rom(MULTIBOOT_ROM_SIZE)
        self.files["bootorder"] = f"/rom@genroms/{MULTIBOOT_ROM}".encode() + b"\0"

    def item(self, key: int) -> bytes | None:
        """KEY's contents; None for a selector beyond the last file slot."""
        index = key & ENTRY_MASK
        if index >= FILE_FIRST + FILE_SLOTS:
            return None
        if key & ARCH_LOCAL:
            return self.items.get(ARCH_LOCAL | index, b"")
        if index == FILE_DIR:
            return self.directory()
        names = sorted(self.files)
        if FILE_FIRST <= index < FILE_FIRST + len(names):
            return self.files[names[index - FILE_FIRST]]
        return self.items.get(index, b"")

    def directory(self) -> bytes:
        names = sorted(self.files)
        return struct.pack(">I", len(names)) + b"".join(
            FILE_ENTRY.pack(len(self.files[name]), FILE_FIRST + i, 0, name.encode())
            for i, name in enumerate(names))

    def select(self, key: int) -> None:
        self.selected = self.item(key)
        self.offset = 0

    def take(self, length: int) -> bytes:
        """The next LENGTH bytes of the selected item (zeros past its end)."""
        data = (self.selected or b"")[self.offset:self.offset + length]
        self.skip(length)
        return data.ljust(length, b"\0")

    def skip(self, length: int) -> None:
        self.offset += length

    def read(self, offset: int, size: int) -> int:
        if size != 1:
            return (1 << (8 * size)) - 1
        return self.take(1)[0]

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 2:  # the selector takes 16-bit writes at either port; bytes are lost
            self.select(value)


class FwCfgDma:
    """The DMA address register: reads "QEMU CFG", and a write of its low half runs
    the transfer the descriptor there describes."""

    def __init__(self, config: FwCfg, memory: GuestMemory, ram_size: int):
        self.config = config
        self.memory = memory
        self.ram_size = ram_size
        self.address_high = 0

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(DMA_SIGNATURE[offset:offset + size].ljust(size, b"\xff"),
                              "little")

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 4:
            return
        address = int.from_bytes(value.to_bytes(4, "little"), "big")
        if offset == DMA_HIGH_OFFSET:
            self.address_high = address
        elif offset == DMA_LOW_OFFSET:
            self.transfer(self.address_high << 32 | address)

    def transfer(self, descriptor: int) -> None:
        """QEMU's fw_cfg_dma_transfer: select, then read, write or skip LENGTH bytes;
        only the error bit goes back into the control word."""
        control, length, address = DMA_ACCESS.unpack(
            self.memory.read_phys(descriptor, DMA_ACCESS.size))
        config = self.config
        if control & DMA_SELECT:
            config.select(control >> 16)
        error = 0
        if control & DMA_READ and address + length > self.ram_size:
            config.skip(length)
            error = DMA_ERROR
        elif control & DMA_READ:
            self.memory.write_phys(address, config.take(length))
        elif control & DMA_WRITE:
            config.skip(length)  # no item of the PC is writable: refused, yet consumed
            error = DMA_ERROR if length else 0
        elif control & DMA_SKIP:
            config.skip(length)
        self.memory.write_phys(descriptor, struct.pack(">I", error))
