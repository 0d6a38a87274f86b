"""The Multiboot loader of the native PC: what GRUB or QEMU's `-kernel` does.

It loads the ELF's PT_LOAD segments at their physical addresses, writes the boot
information structure, and leaves the CPU as the Multiboot 0.6.96 spec (section 3.2)
promises: 32-bit protected mode, paging off, flat CS/DS/ES/FS/GS/SS, IF clear,
EAX = 0x2BADB002, EBX = the information structure's physical address.
"""

import struct
from dataclasses import dataclass
from pathlib import Path

from pvtool.errors import InputMissingError, UnsupportedImageError, UsageError
from pvtool.image.elf import ElfImage
from pvtool.image.multiboot import (
    BOOTLOADER_MAGIC,
    CR0_AT_ENTRY,
    MEMORY_AVAILABLE,
    MEMORY_RESERVED,
    PC_CONVENTIONAL_MEMORY_KIB,
    Module,
    build_info,
    find_header,
)
from pvtool.machine.cpu import (
    CR0,
    CS,
    DS,
    EAX,
    EBX,
    EFLAGS,
    EIP,
    ES,
    ESP,
    FS,
    GDTR,
    GS,
    SS,
)
from pvtool.machine.firmware.tables import write_tables
from pvtool.machine.pc import Machine
from pvtool.x86.isa import decode_all
from pvtool.x86.paging import page_up
from pvtool.x86.registers import EFLAGS_RESERVED

# Low-memory layout of the emulated PC (as on QEMU's: 639 KiB of conventional memory,
# the EBDA and BIOS ROM above it reserved).
CONVENTIONAL_END = PC_CONVENTIONAL_MEMORY_KIB * 1024
BIOS_AREA = 0xF0000
BOOT_GDT = BIOS_AREA  # the loader's flat GDT lives in the reserved BIOS area
INFO_BASE = 0x9000  # the boot information structure and its strings
INFO_LIMIT = 0x10000
BOOT_CS, BOOT_DS = 0x08, 0x10
FLAT_CODE = 0x00CF9B000000FFFF  # base 0, limit 4 GiB, ring 0, accessed
FLAT_DATA = 0x00CF93000000FFFF


@dataclass(frozen=True)
class BootState:
    entry: int
    info_addr: int
    image_end: int  # first physical byte after the loaded image


def load_multiboot(machine: Machine, image: ElfImage, *, cmdline: bytes = b"",
                   modules: tuple[Path, ...] = ()) -> BootState:
    """Load IMAGE (and MODULES after it) into MACHINE's RAM and set the CPU up for its
    entry point."""
    header = find_header(image)
    if header is None:
        raise UnsupportedImageError(
            f"{image.path}: no Multiboot header in the first 8 KiB; --native boots "
            "Multiboot kernels")
    write_tables(machine.memory, machine.ram_size, machine.pci.functions.values())
    image_end = _load_segments(machine, image)
    loaded = _load_modules(machine, modules, image_end)
    info = build_info(
        INFO_BASE,
        mem_lower_kib=PC_CONVENTIONAL_MEMORY_KIB,
        mem_upper_kib=(machine.ram_size - (1 << 20)) // 1024,
        mmap=memory_map(machine.ram_size),
        cmdline=cmdline or str(image.path).encode(),
        modules=loaded,
        bootloader_name=b"pvtool",
        boot_device=None,
    )
    if INFO_BASE + len(info.data) > INFO_LIMIT:
        raise UnsupportedImageError("the Multiboot command line is too long")
    machine.memory.write_phys(INFO_BASE, info.data)
    machine.watch_halts(halt_addresses(image))
    _enter_protected_mode(machine, image.entry, info.info_addr)
    return BootState(image.entry, info.info_addr, image_end)


def memory_map(ram_size: int) -> list[tuple[int, int, int]]:
    """The BIOS memory map (E820) the guest is told about."""
    return [
        (0, CONVENTIONAL_END, MEMORY_AVAILABLE),
        (CONVENTIONAL_END, 0xA0000 - CONVENTIONAL_END, MEMORY_RESERVED),
        (BIOS_AREA, 0x100000 - BIOS_AREA, MEMORY_RESERVED),
        (0x100000, ram_size - 0x100000, MEMORY_AVAILABLE),
    ]


def halt_addresses(image: ElfImage) -> list[int]:
    """Where the image's executable segments hold a hlt, by a linear sweep."""
    found = []
    for base, code in image.executable_regions():
        for item in decode_all(code, base, image.bits):
            if getattr(item, "mnemonic", None) == "hlt":
                found.append(item.address)
    return found


def _load_modules(machine: Machine, paths: tuple[Path, ...], start: int) -> list[Module]:
    """Each module page-aligned after the kernel (as QEMU's -initrd places them), its
    string the file's path."""
    loaded = []
    address = page_up(start)
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputMissingError(f"{path}: cannot read the module: "
                                    f"{exc.strerror or exc}") from None
        if address + len(data) > machine.ram_size:
            raise UsageError(f"{path}: the module does not fit in the guest's RAM")
        machine.memory.write_phys(address, data)
        loaded.append(Module(address, address + len(data), str(path).encode()))
        address = page_up(address + len(data))
    return loaded


def _load_segments(machine: Machine, image: ElfImage) -> int:
    end = 0
    for seg in image.segments:
        if seg.memsz == 0:
            continue
        if seg.paddr < 0x100000 or seg.paddr + seg.memsz > machine.ram_size:
            raise UnsupportedImageError(
                f"{image.path}: segment at physical {seg.paddr:#x} (+{seg.memsz:#x}) is "
                f"outside the machine's RAM above 1 MiB ({machine.ram_size >> 20} MiB)")
        data = image.data[seg.offset:seg.offset + seg.filesz]
        machine.memory.write_phys(seg.paddr, data + bytes(seg.memsz - seg.filesz))
        end = max(end, seg.paddr + seg.memsz)
    return end


def _enter_protected_mode(machine: Machine, entry: int, info_addr: int) -> None:
    cpu = machine.cpu
    gdt = struct.pack("<3Q", 0, FLAT_CODE, FLAT_DATA)
    machine.memory.write_phys(BOOT_GDT, gdt)
    cpu.set_descriptor_table(GDTR, BOOT_GDT, len(gdt) - 1)
    cpu.write(CR0, CR0_AT_ENTRY)
    cpu.write(CS, BOOT_CS)
    for reg in (DS, ES, FS, GS, SS):
        cpu.write(reg, BOOT_DS)
    cpu.write(ESP, 0)  # Multiboot leaves ESP undefined: the kernel sets its own stack
    cpu.write(EFLAGS, EFLAGS_RESERVED)
    cpu.write(EAX, BOOTLOADER_MAGIC)
    cpu.write(EBX, info_addr)
    cpu.write(EIP, entry)
