"""The Multiboot loader of the native PC: what QEMU's `-kernel` does.

QEMU 7.2 loads the ELF's PT_LOAD segments at their physical addresses, writes the boot
information, and its Multiboot option ROM (run by SeaBIOS) enters the kernel in 32-bit
protected mode, paging off, IF clear, EAX = 0x2BADB002, EBX = the information structure
(Multiboot specification 0.6.96, section 3.2). Everything the specification leaves
undefined is what QEMU leaves, as guests/probeboot measured it: the other registers,
the option ROM's GDT, the real-mode IDTR, where each part of the information lies,
the command line (the kernel's path, a space, then -append's text), the loader's name
and the firmware's memory map. The firmware's data in low memory comes from
machine/firmware/post.py.

Departures: an image that reaches past the end of RAM (QEMU hangs) or into the VGA
window at 0xA0000-0xBFFFF (QEMU's kernel never runs) is refused with one line. The
kernel's path in the command line and each module's string are the paths as pvtool
holds them (pathlib drops a leading "./" and doubled slashes, QEMU keeps them), and
QEMU's -initrd also lets a module carry arguments after a space. Of the option ROM
itself only its GDT is in memory, not its code or what its stack below ESP holds. RAM
of 3.5 GiB and more, which QEMU splits around the PCI hole, is beyond pvtool's
--memory range.
"""

from dataclasses import dataclass
from pathlib import Path

from pvtool.errors import InputMissingError, UnsupportedImageError, UsageError
from pvtool.image.elf import ElfImage
from pvtool.image.flat import FlatImage
from pvtool.image.multiboot import (
    BOOTLOADER_MAGIC,
    CR0_AT_ENTRY,
    HEADER_SEARCH_LIMIT,
    MEMORY_AVAILABLE,
    MEMORY_RESERVED,
    PC_CONVENTIONAL_MEMORY_KIB,
    InfoLayout,
    Module,
    MultibootHeader,
    MultibootInfo,
    aout_kludge_load,
    build_info,
    extras_size,
    find_header,
)
from pvtool.machine.cpu import (
    CR0,
    CR4,
    CS,
    DS,
    EAX,
    EBP,
    EBX,
    ECX,
    EDI,
    EDX,
    EFLAGS,
    EIP,
    ES,
    ESI,
    ESP,
    FS,
    GDTR,
    GS,
    IDTR,
    SS,
    Cpu,
    SegmentCache,
)
from pvtool.machine.cpuid import CpuModel
from pvtool.machine.firmware.bios_data import EBDA_BASE, EBDA_SIZE_KIB
from pvtool.machine.firmware.layout import HIGH_ZONE_SIZE, high_zone
from pvtool.machine.firmware.post import power_on
from pvtool.machine.fw_cfg import KernelFacts
from pvtool.machine.pc import Machine
from pvtool.x86.descriptors import (
    ACCESSED,
    CODE_RX,
    CONFORMING,
    DATA_RW,
    DESCRIPTOR_SIZE,
    SegmentDescriptor,
)
from pvtool.x86.isa import decode_all
from pvtool.x86.paging import page_up
from pvtool.x86.registers import EFLAGS_RESERVED

MIB = 1 << 20
VGA_WINDOW, VGA_WINDOW_END = 0xA0000, 0xC0000  # the legacy VGA memory, not RAM
# SeaBIOS's E820 map: the EBDA, the BIOS ROM's shadow below 1 MiB, 128 KiB at the top
# of RAM it keeps for itself (firmware/layout.py's high zone), and the flash ROM's
# mapping below 4 GiB.
BIOS_AREA = 0xF0000
FLASH_ROM = 0xFFFC0000
# Where QEMU's option ROM puts the E820 map and the information structure (the module
# list and the strings go after the kernel: see _info_layout).
MMAP_ADDR = 0x9000
INFO_ADDR = 0x9500
BOOTLOADER_NAME = b"qemu"
BOOT_DEVICE = 0x8000FFFF  # the first hard disk, no partition
# The option ROM's GDT, inside its image at 0xC0000-0xDFFFF, still loaded at entry:
# null, flat 32-bit code and data, 16-bit code and data (for its return to real mode).
BOOT_GDT = 0xCA2B8
BOOT_GDT_DESCRIPTORS = (  # after the null descriptor
    SegmentDescriptor(limit=0xFFFFF, type=CODE_RX, granularity=True),
    SegmentDescriptor(limit=0xFFFFF, type=DATA_RW | ACCESSED, granularity=True),
    SegmentDescriptor(limit=0xFFFF, type=CODE_RX | CONFORMING, db=False),
    SegmentDescriptor(limit=0xFFFF, type=DATA_RW, db=False),
)
BOOT_CS, BOOT_DS = 0x08, 0x10
REAL_MODE_IDT_LIMIT = 0x3FF  # the IVT: the option ROM never loads an IDT of its own
# The registers the option ROM leaves that the specification does not define.
ENTRY_ESP = 0x6F08
ENTRY_EDI = 0x1000
ENTRY_EDX_LOW = 0x0511  # EDX's upper half is mem_upper's
ENTRY_EFLAGS = EFLAGS_RESERVED | 0x4  # PF set by the option ROM's last comparison


# QEMU's -kernel looks for the header only where all 48 bytes of 3.1.1's fields fit in
# the first 8 KiB (hw/i386/multiboot.c: i < 8192 - 48); a later one is not found.
QEMU_HEADER_SCAN_END = HEADER_SEARCH_LIMIT - 48

KernelImage = ElfImage | FlatImage  # what -kernel boots: an ELF, or a flat binary


@dataclass(frozen=True)
class BootState:
    entry: int
    info_addr: int
    image_end: int  # first physical byte after the loaded image


@dataclass(frozen=True)
class Chunk:
    """Bytes of the kernel image (from FILE_OFFSET in the file) at a physical address;
    `zeros` more bytes after them are cleared (the bss)."""

    paddr: int
    file_offset: int
    data: bytes
    zeros: int = 0

    @property
    def end(self) -> int:
        return self.paddr + len(self.data) + self.zeros


def load_multiboot(machine: Machine, image: KernelImage, *, cmdline: bytes = b"",
                   modules: tuple[Path, ...] = ()) -> BootState:
    """Load IMAGE (and MODULES after it) into MACHINE's RAM, write the firmware's data,
    and set the CPU up for the kernel's entry point as QEMU's `-kernel` does."""
    header = _qemu_header(image)
    chunks, entry = aout_kludge_chunks(image, header) if header.aout_kludge \
        else elf_chunks(image)
    image_start, image_end = _check_placement(machine, image, chunks)
    contents = [read_module(path) for path in modules]
    full_cmdline = multiboot_cmdline(image.path, cmdline)
    info = _boot_information(machine, _info_layout(image_start, image_end), full_cmdline,
                             modules, contents)
    _write_memory(machine, info, chunks, contents)
    machine.fw_cfg.load_kernel(_kernel_facts(image_start, entry, chunks, info, contents))
    halts = halt_addresses(image)
    if header.aout_kludge and image.bits == 64:
        # An ELF64 (qemu-system-x86_64 loads one only so) runs its 32-bit stub where
        # the kludge put it and the rest where the ELF links it, once it pages.
        halts += _moved(image, halts, chunks[0])
    elif header.aout_kludge:
        halts = _moved(image, halts, chunks[0])
    machine.watches.halts(halts)
    _enter_protected_mode(machine, entry, info.info_addr)
    return BootState(entry, info.info_addr, image_end)


def _qemu_header(image: KernelImage) -> MultibootHeader:
    """The Multiboot header, where QEMU's -kernel finds it."""
    header = find_header(image)
    if header is None:
        raise UnsupportedImageError(
            f"{image.path}: no Multiboot header in the first 8 KiB; --native boots "
            "Multiboot kernels")
    if header.offset >= QEMU_HEADER_SCAN_END:
        raise UnsupportedImageError(
            f"{image.path}: the Multiboot header at file offset {header.offset:#x} lies "
            f"past the first {QEMU_HEADER_SCAN_END} bytes, where QEMU's -kernel looks for "
            "it (QEMU then takes the file for a Linux kernel, and never runs this one)")
    if image.bits == 64 and not header.aout_kludge:
        raise UnsupportedImageError(
            f"{image.path}: a 64-bit ELF whose Multiboot header has no address fields "
            "(flag 16), which qemu-system-x86_64 -kernel refuses as well (\"Cannot load "
            "x86-64 image, give a 32bit one.\"): set them, or link the kernel as ELF32")
    return header


def _boot_information(machine: Machine, layout: InfoLayout, cmdline: bytes,
                      modules: tuple[Path, ...], contents: list[bytes]) -> MultibootInfo:
    """QEMU's information, the modules placed after its extras."""
    strings = [module_string(path) for path in modules]
    size = extras_size(cmdline, strings, BOOTLOADER_NAME)
    loaded = place_modules(machine, modules, contents, strings, layout.extras_addr + size)
    return build_info(
        layout,
        mem_lower_kib=PC_CONVENTIONAL_MEMORY_KIB,
        mem_upper_kib=_mem_upper_kib(machine.ram_size),
        mmap=memory_map(machine.ram_size, machine.cpu_model),
        cmdline=cmdline,
        modules=loaded,
        bootloader_name=BOOTLOADER_NAME,
        boot_device=BOOT_DEVICE,
    )


def _write_memory(machine: Machine, info: MultibootInfo, chunks: list[Chunk],
                  contents: list[bytes]) -> None:
    """In QEMU's order: the firmware's tables at POST, then the option ROM's E820 map
    and information structure, then the kernel with the extras and modules after it
    (so a kernel loaded over 0x9000 wins, as on QEMU)."""
    power_on(machine)
    structure, mmap, extras = info.pieces()
    for addr, data in (structure, mmap):
        machine.memory.write_phys(addr, data)
    for chunk in chunks:
        machine.memory.write_phys(chunk.paddr, chunk.data + bytes(chunk.zeros))
    _write_clipped(machine, *extras)
    for module, data in zip(info.modules, contents, strict=True):
        machine.memory.write_phys(module.start, data)


def _kernel_facts(image_start: int, entry: int, chunks: list[Chunk], info: MultibootInfo,
                  contents: list[bytes]) -> KernelFacts:
    """What QEMU's Multiboot loader hands its option ROM through fw_cfg: one buffer
    from the image's lowest address, holding the image, the information's extras and
    the modules where they are loaded, up to the end of the last one's page."""
    extras_addr, extras = info.pieces()[-1]
    pieces = [(chunk.paddr, chunk.data + bytes(chunk.zeros)) for chunk in chunks]
    pieces.append((extras_addr, extras))
    pieces += [(module.start, data) for module, data in zip(info.modules, contents, strict=True)]
    image = bytearray(page_up(max(addr + len(data) for addr, data in pieces) - image_start))
    for addr, data in pieces:
        image[addr - image_start:addr - image_start + len(data)] = data
    return KernelFacts(image_start, entry, bytes(image), info.info_addr, info.structure)


def elf_chunks(image: ElfImage) -> tuple[list[Chunk], int]:
    """The PT_LOAD segments at their physical addresses, and the entry point. QEMU's ELF
    loader (include/hw/elf_ops.h) makes a virtual e_entry physical when it lies in an
    executable segment whose virtual and physical addresses differ; any other e_entry
    is jumped to as it is."""
    chunks = [Chunk(seg.paddr, seg.offset, image.data[seg.offset:seg.offset + seg.filesz],
                    seg.memsz - seg.filesz) for seg in image.segments if seg.memsz]
    entry = image.entry
    for seg in image.segments:
        if (seg.executable and seg.vaddr != seg.paddr
                and seg.vaddr <= image.entry < seg.vaddr + seg.filesz):
            entry = image.entry - seg.vaddr + seg.paddr
    return chunks, entry


def aout_kludge_chunks(image: KernelImage, header: MultibootHeader) -> tuple[list[Chunk], int]:
    """The image as the header's address fields place it (Multiboot 3.1.3): QEMU
    honours them whenever flag 16 is set, even in an ELF file."""
    load = aout_kludge_load(image.path, image.data, header)
    data = image.data[load.file_offset:load.file_offset + load.size]
    return [Chunk(load.load_addr, load.file_offset, data, load.bss_size)], load.entry


def memory_map(ram_size: int, cpu: CpuModel) -> list[tuple[int, int, int]]:
    """The BIOS memory map (E820) SeaBIOS reports for RAM_SIZE bytes of RAM, and the
    ranges the PC reserves for CPU (QEMU's own e820 entries, which SeaBIOS appends)."""
    usable_top = high_zone(ram_size)
    reserved = [(base, length, MEMORY_RESERVED) for base, length in cpu.reserved_ranges]
    return [
        (0, EBDA_BASE, MEMORY_AVAILABLE),
        (EBDA_BASE, EBDA_SIZE_KIB * 1024, MEMORY_RESERVED),
        (BIOS_AREA, MIB - BIOS_AREA, MEMORY_RESERVED),
        (MIB, usable_top - MIB, MEMORY_AVAILABLE),
        (usable_top, HIGH_ZONE_SIZE, MEMORY_RESERVED),
        (FLASH_ROM, (1 << 32) - FLASH_ROM, MEMORY_RESERVED),
        *reserved,
    ]


def _mem_upper_kib(ram_size: int) -> int:
    """The KiB available from 1 MiB up to the first hole: the firmware's own top of RAM."""
    return (high_zone(ram_size) - MIB) // 1024


def _info_layout(image_start: int, image_end: int) -> InfoLayout:
    """QEMU puts the module list and the strings at the page after the kernel image
    (counted from its lowest address), the rest where its option ROM writes them."""
    extras = image_start + page_up(image_end - image_start)
    return InfoLayout(info_addr=INFO_ADDR, mmap_addr=MMAP_ADDR, extras_addr=extras)


def halt_addresses(image: KernelImage) -> list[int]:
    """Where the image's executable segments hold a hlt, by a linear sweep."""
    found = []
    for base, code in image.executable_regions():
        for item in decode_all(code, base, image.bits):
            if getattr(item, "mnemonic", None) == "hlt":
                found.append(item.address)
    return found


def _moved(image: KernelImage, addresses: list[int], chunk: Chunk) -> list[int]:
    """ADDRESSES (the ELF's) where the a.out kludge's CHUNK put their bytes."""
    moved = []
    for addr in addresses:
        offset = image.file_offset(addr)
        if offset is not None and 0 <= offset - chunk.file_offset < len(chunk.data):
            moved.append(chunk.paddr + offset - chunk.file_offset)
    return moved


def multiboot_cmdline(path: Path, cmdline: bytes) -> bytes:
    """QEMU's command line: the kernel's path, a space, and -append's text."""
    return str(path).encode() + b" " + cmdline


def module_string(path: Path) -> bytes:
    """A module's string: its path, as -initrd names it."""
    return str(path).encode()


def read_module(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputMissingError(f"{path}: cannot read the module: "
                                f"{exc.strerror or exc}") from None


def place_modules(machine: Machine, paths: tuple[Path, ...], contents: list[bytes],
                   strings: list[bytes], start: int) -> list[Module]:
    """Each module on the page after the previous one (the first after the
    information's extras), as QEMU's -initrd places them."""
    loaded = []
    address = page_up(start)
    for path, data, string in zip(paths, contents, strings, strict=True):
        if address + len(data) > machine.ram_size:
            raise UsageError(f"{path}: the module does not fit in the guest's RAM")
        loaded.append(Module(address, address + len(data), string))
        address = page_up(address + len(data))
    return loaded


def _write_clipped(machine: Machine, addr: int, data: bytes) -> None:
    """Write what lands in RAM: past its end the option ROM's copy goes nowhere, as
    on QEMU (a kernel that ends at the end of RAM boots, its strings lost)."""
    if addr < machine.ram_size:
        machine.memory.write_phys(addr, data[:machine.ram_size - addr])


def image_at(path: Path, paddr: int, size: int) -> str:
    """How a loader's refusal names the part of an image it will not load."""
    return f"{path}: the image at physical {paddr:#x} (+{size:#x})"


def _check_placement(machine: Machine, image: KernelImage,
                     chunks: list[Chunk]) -> tuple[int, int]:
    """The image's lowest address and its end, once every chunk is known to land in
    RAM. QEMU loads a kernel below 1 MiB too; the VGA window is not RAM there (a kernel
    in it never runs), and past the end of RAM QEMU hangs: pvtool refuses both."""
    for chunk in chunks:
        where = image_at(image.path, chunk.paddr, chunk.end - chunk.paddr)
        if chunk.end > machine.ram_size:
            raise UnsupportedImageError(
                f"{where} does not fit in the machine's RAM ({machine.ram_size >> 20} MiB)")
        if chunk.paddr < VGA_WINDOW_END and chunk.end > VGA_WINDOW:
            raise UnsupportedImageError(
                f"{where} overlaps the VGA window {VGA_WINDOW:#x}-{VGA_WINDOW_END - 1:#x}, "
                "which is not RAM")
    if not chunks:
        raise UnsupportedImageError(f"{image.path}: nothing to load")
    return min(c.paddr for c in chunks), max(c.end for c in chunks)


def _enter_protected_mode(machine: Machine, entry: int, info_addr: int) -> None:
    cpu = machine.cpu
    gdt = bytes(DESCRIPTOR_SIZE) + b"".join(d.encode() for d in BOOT_GDT_DESCRIPTORS)
    machine.memory.write_phys(BOOT_GDT, gdt)
    cpu.set_descriptor_table(GDTR, BOOT_GDT, len(gdt) - 1)
    cpu.set_descriptor_table(IDTR, 0, REAL_MODE_IDT_LIMIT)
    cpu.write(CR0, CR0_AT_ENTRY)
    cpu.write(CR4, 0)
    cpu.write(CS, BOOT_CS)
    for reg in (DS, ES, FS, GS, SS):
        cpu.write(reg, BOOT_DS)
    mem_upper = _mem_upper_kib(machine.ram_size)
    registers = {EAX: BOOTLOADER_MAGIC, EBX: info_addr, ECX: entry,
                 EDX: mem_upper & 0xFFFF0000 | ENTRY_EDX_LOW, ESI: 0, EDI: ENTRY_EDI,
                 EBP: 0, ESP: ENTRY_ESP, EFLAGS: ENTRY_EFLAGS, EIP: entry}
    for reg, value in registers.items():
        cpu.write(reg, value)
    if cpu.bits == 64:
        _leave_long_mode(cpu)
    # Unicorn's segment register writes mark the descriptors accessed in memory (and
    # scribble on the null one); the option ROM's GDT reads as QEMU leaves it.
    machine.memory.write_phys(BOOT_GDT, gdt)


def _leave_long_mode(cpu: Cpu) -> None:
    """A 64-bit CPU (qemu-system-x86_64's PC) enters the kernel in protected mode as
    well, EFER clear, but Unicorn starts it in long mode, where a selector write loads
    no descriptor: the option ROM's flat segments are loaded into the caches here."""
    code, data = BOOT_GDT_DESCRIPTORS[0], BOOT_GDT_DESCRIPTORS[1]
    flat_data = SegmentCache.of(BOOT_DS, data)
    cpu.load_segments(SegmentCache.of(BOOT_CS, code), flat_data, data=flat_data, efer=0)
