"""Multiboot 1 (specification 0.6.96): the header a kernel carries and the boot
information structure a loader hands it in EBX.

Section numbers below are the specification's: 3.1 "OS image format" (the header) and
3.3 "Boot information format" (the info structure).
"""

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pvtool.errors import ImageError

# 3.1.1: the header is 32-bit aligned and lies entirely within the first 8192 bytes.
HEADER_MAGIC = 0x1BADB002
HEADER_SEARCH_LIMIT = 8192
HEADER_ALIGN = 4
# 3.2: the value a compliant loader leaves in EAX.
BOOTLOADER_MAGIC = 0x2BADB002
# The machine state a Multiboot loader leaves on a PC, which pvtool's native loader
# sets and a PV port recreates: CR0 with PE (and ET, which every CPU since the 486
# reports), and the conventional memory a PC BIOS reports below the EBDA.
CR0_AT_ENTRY = 0x11
PC_CONVENTIONAL_MEMORY_KIB = 639

# 3.1.2 header flags. Bits 0-15 are requirements: a loader that does not know one of
# them must refuse the image. Bits 16-31 are optional features.
HEADER_PAGE_ALIGN = 1 << 0  # load modules on 4 KiB boundaries
HEADER_MEMORY_INFO = 1 << 1  # mem_* fields (and mmap_* if available) wanted
HEADER_VIDEO_MODE = 1 << 2  # video mode table wanted
HEADER_AOUT_KLUDGE = 1 << 16  # the address fields below are valid
HEADER_KNOWN_REQUIRED = HEADER_PAGE_ALIGN | HEADER_MEMORY_INFO | HEADER_VIDEO_MODE
HEADER_REQUIRED_MASK = 0xFFFF

# 3.3 info flags: which fields of the info structure are valid.
INFO_MEMORY = 1 << 0
INFO_BOOT_DEVICE = 1 << 1
INFO_CMDLINE = 1 << 2
INFO_MODS = 1 << 3
INFO_MEM_MAP = 1 << 6
INFO_BOOT_LOADER_NAME = 1 << 9

# 3.3 memory map entry types.
MEMORY_AVAILABLE = 1
MEMORY_RESERVED = 2
MEMORY_ACPI_RECLAIMABLE = 3
MEMORY_NVS = 4
MEMORY_BADRAM = 5

_HEAD = struct.Struct("<3I")  # magic, flags, checksum
_ADDRESSES = struct.Struct("<5I")  # header_addr, load_addr, load_end, bss_end, entry
_VIDEO = struct.Struct("<4I")  # mode_type, width, height, depth
_ADDRESSES_AT, _VIDEO_AT = 12, 32  # their offsets in the header (specification 3.1.1)

# 3.3: the info structure. Fields QEMU does not provide (a.out/ELF symbols, drives,
# config table, APM, VBE, framebuffer) stay zero and their flags clear.
INFO_SIZE = 116
INFO_FIELDS = {  # name: offset; every field is a u32
    "flags": 0, "mem_lower": 4, "mem_upper": 8, "boot_device": 12, "cmdline": 16,
    "mods_count": 20, "mods_addr": 24, "mmap_length": 44, "mmap_addr": 48,
    "boot_loader_name": 64,
}
MMAP_ENTRY = struct.Struct("<IQQI")  # size, base_addr, length, type
MMAP_ENTRY_SIZE_FIELD = MMAP_ENTRY.size - 4  # 'size' counts the bytes after itself
MODULE_ENTRY = struct.Struct("<4I")  # mod_start, mod_end, string, reserved


class KernelFile(Protocol):
    """What the header is read from: an ELF image or a flat binary."""

    path: Path
    data: bytes


@dataclass(frozen=True)
class MultibootHeader:
    offset: int  # file offset of the magic
    flags: int
    checksum: int
    # Valid only with HEADER_AOUT_KLUDGE; None otherwise.
    header_addr: int | None = None
    load_addr: int | None = None
    load_end_addr: int | None = None
    bss_end_addr: int | None = None
    entry_addr: int | None = None
    # Valid only with HEADER_VIDEO_MODE; None otherwise.
    mode_type: int | None = None
    width: int | None = None
    height: int | None = None
    depth: int | None = None

    @property
    def page_align(self) -> bool:
        return bool(self.flags & HEADER_PAGE_ALIGN)

    @property
    def memory_info(self) -> bool:
        return bool(self.flags & HEADER_MEMORY_INFO)

    @property
    def video_mode(self) -> bool:
        return bool(self.flags & HEADER_VIDEO_MODE)

    @property
    def aout_kludge(self) -> bool:
        return bool(self.flags & HEADER_AOUT_KLUDGE)

    @property
    def size(self) -> int:
        """The bytes the header occupies: the fields its flags ask for and any before them."""
        if self.video_mode:
            return _VIDEO_AT + _VIDEO.size
        if self.aout_kludge:
            return _ADDRESSES_AT + _ADDRESSES.size
        return _HEAD.size

    @property
    def unknown_required_flags(self) -> int:
        """Requirement bits this specification version does not define; a loader must
        refuse an image that sets any."""
        return self.flags & HEADER_REQUIRED_MASK & ~HEADER_KNOWN_REQUIRED


@dataclass(frozen=True)
class Module:
    start: int  # physical address of the first byte
    end: int  # physical address one past the last byte
    string: bytes  # the module's command line, without NUL


@dataclass(frozen=True)
class InfoLayout:
    """Where a loader puts the three parts of the boot information. The specification
    lets them lie anywhere; QEMU puts each in a different place (machine/loader.py)."""

    info_addr: int  # the structure itself, whose address the kernel gets in EBX
    mmap_addr: int  # the memory map's entries
    extras_addr: int  # the module list, then the module strings, command line, loader name


@dataclass(frozen=True)
class MultibootInfo:
    layout: InfoLayout
    structure: bytes  # INFO_SIZE bytes at layout.info_addr
    mmap: bytes  # at layout.mmap_addr
    extras: bytes  # at layout.extras_addr
    modules: tuple[Module, ...]  # what the module list lists

    @property
    def info_addr(self) -> int:
        return self.layout.info_addr

    def pieces(self) -> list[tuple[int, bytes]]:
        """Each part with the physical address it is written at."""
        layout = self.layout
        return [(layout.info_addr, self.structure), (layout.mmap_addr, self.mmap),
                (layout.extras_addr, self.extras)]


def find_header(image: KernelFile) -> MultibootHeader | None:
    """The first valid Multiboot header in IMAGE's file, or None if there is none."""
    return header_in(image.path, image.data)


def header_in(path: Path, data: bytes) -> MultibootHeader | None:
    """The first valid Multiboot header in DATA (the file at PATH), or None.

    A magic word whose checksum does not match is skipped, as GRUB skips it; if no
    valid header follows, the image is corrupt rather than merely not Multiboot."""
    bad_offset = None
    last = min(len(data), HEADER_SEARCH_LIMIT) - _HEAD.size
    for offset in range(0, last + 1, HEADER_ALIGN):
        magic, flags, checksum = _HEAD.unpack_from(data, offset)
        if magic != HEADER_MAGIC:
            continue
        if (magic + flags + checksum) & 0xFFFFFFFF == 0:
            return _header_at(path, data, offset, flags, checksum)
        if bad_offset is None:
            bad_offset = offset
    if bad_offset is not None:
        raise ImageError(f"{path}: Multiboot header at file offset {bad_offset:#x} "
                         "has a bad checksum (magic + flags + checksum must be 0 mod 2^32)")
    return None


def _header_at(path: Path, data: bytes, offset: int, flags: int,
               checksum: int) -> MultibootHeader:
    fields: dict[str, int] = {}
    optional = [(HEADER_AOUT_KLUDGE, _ADDRESSES, _ADDRESSES_AT,
                 ("header_addr", "load_addr", "load_end_addr", "bss_end_addr", "entry_addr")),
                (HEADER_VIDEO_MODE, _VIDEO, _VIDEO_AT, ("mode_type", "width", "height", "depth"))]
    for flag, layout, at, names in optional:
        if not flags & flag:
            continue
        end = offset + at + layout.size
        if end > min(len(data), HEADER_SEARCH_LIMIT):
            raise ImageError(f"{path}: Multiboot header at file offset {offset:#x} "
                             "is cut short: it must lie within the first 8192 bytes")
        fields.update(zip(names, layout.unpack_from(data, offset + at), strict=True))
    return MultibootHeader(offset=offset, flags=flags, checksum=checksum, **fields)


@dataclass(frozen=True)
class KludgeLoad:
    """Where the a.out kludge's address fields (3.1.3) put a kernel: SIZE bytes of the
    file from FILE_OFFSET at LOAD_ADDR, then BSS_SIZE zero bytes; entered at ENTRY."""

    load_addr: int
    file_offset: int
    size: int
    bss_size: int
    entry: int

    def holds(self, addr: int) -> bool:
        """Whether ADDR is one of the bytes loaded from the file."""
        return self.load_addr <= addr < self.load_addr + self.size


def aout_kludge_load(path: Path, data: bytes, header: MultibootHeader) -> KludgeLoad:
    """The load HEADER's address fields describe in DATA (the file at PATH). The text
    starts header_addr - load_addr bytes before the header; load_end_addr 0 means the
    rest of the file, bss_end_addr 0 no bss. The fields are checked as QEMU 7.2's
    -kernel checks them, in its order (hw/i386/multiboot.c, load_multiboot), and
    whatever it refuses is refused; it does not check the entry point."""
    where = f"{path}: the Multiboot header at file offset {header.offset:#x} has"
    load = header.load_addr
    if header.header_addr < load:
        raise ImageError(f"{where} header_addr {header.header_addr:#x} below "
                         f"load_addr {load:#x}")
    offset = header.offset - (header.header_addr - load)
    if offset < 0:
        raise ImageError(f"{where} header_addr {header.header_addr:#x}, which puts "
                         f"load_addr {load:#x} before the start of the file")
    size = len(data) - offset
    if header.load_end_addr:
        if header.load_end_addr < load:
            raise ImageError(f"{where} load_end_addr {header.load_end_addr:#x} below "
                             f"load_addr {load:#x}")
        size = header.load_end_addr - load
    bss = 0
    if header.bss_end_addr:
        if header.bss_end_addr < load + size:
            raise ImageError(f"{where} bss_end_addr {header.bss_end_addr:#x} below "
                             f"the end of the loaded text {load + size:#x}")
        bss = header.bss_end_addr - load - size
    if offset + size > len(data):
        raise ImageError(f"{where} load_end_addr {header.load_end_addr:#x} past the end "
                         f"of the file ({len(data)} bytes)")
    return KludgeLoad(load, offset, size, bss, header.entry_addr)


def extras_size(cmdline: bytes, module_strings: Sequence[bytes],
                bootloader_name: bytes) -> int:
    """The bytes build_info puts at extras_addr: a loader that places the modules after
    them needs this before it knows where the modules go."""
    strings = [*module_strings, cmdline, bootloader_name]
    return len(module_strings) * MODULE_ENTRY.size + sum(len(s) + 1 for s in strings)


def build_info(layout: InfoLayout, *, mem_lower_kib: int, mem_upper_kib: int,
               mmap: Sequence[tuple[int, int, int]] = (), cmdline: bytes = b"",
               modules: Sequence[Module] = (), bootloader_name: bytes = b"",
               boot_device: int | None = None) -> MultibootInfo:
    """The info structure and everything it points to, at LAYOUT's addresses.

    mmap entries are (base_addr, length, type). The command line and the module list
    are always passed (an empty string and zero modules are valid); the memory map,
    loader name and boot device only when given. The extras are the module list, then
    the module strings, the command line and the loader name, packed: QEMU's order."""
    # The extras follow the kernel's own alignment, which may be none.
    for name, addr in vars(layout).items():
        if (addr % 4 and name != "extras_addr") or not 0 <= addr < 1 << 32:
            raise ValueError(f"{name} {addr:#x} must be a 4-byte aligned 32-bit address")
    fields = {"flags": INFO_MEMORY | INFO_CMDLINE | INFO_MODS,
              "mem_lower": mem_lower_kib, "mem_upper": mem_upper_kib}
    if boot_device is not None:
        fields["flags"] |= INFO_BOOT_DEVICE
        fields["boot_device"] = boot_device
    if mmap:
        fields["flags"] |= INFO_MEM_MAP
        fields["mmap_addr"] = layout.mmap_addr
        fields["mmap_length"] = len(mmap) * MMAP_ENTRY.size
    extras = bytearray()
    fields.update(_append_modules(extras, layout.extras_addr, modules))
    fields["cmdline"] = _append_string(extras, layout.extras_addr, cmdline)
    if bootloader_name:
        fields["flags"] |= INFO_BOOT_LOADER_NAME
        fields["boot_loader_name"] = _append_string(extras, layout.extras_addr,
                                                    bootloader_name)
    if layout.extras_addr + len(extras) > 1 << 32:
        raise ValueError(f"the extras at {layout.extras_addr:#x} do not fit below 4 GiB")
    structure = bytearray(INFO_SIZE)
    for name, value in fields.items():
        struct.pack_into("<I", structure, INFO_FIELDS[name], value)
    entries = b"".join(MMAP_ENTRY.pack(MMAP_ENTRY_SIZE_FIELD, addr, length, kind)
                       for addr, length, kind in mmap)
    return MultibootInfo(layout, bytes(structure), entries, bytes(extras), tuple(modules))


def _append_string(blob: bytearray, base: int, text: bytes) -> int:
    """Append text as a C string; return its physical address."""
    if b"\0" in text:
        raise ValueError(f"string {text!r} contains a NUL byte")
    addr = base + len(blob)
    blob += text + b"\0"
    return addr


def _append_modules(blob: bytearray, base: int, modules: Sequence[Module]) -> dict[str, int]:
    """The module list first, each entry's string after the whole list."""
    mods_addr = base + len(blob)
    strings_addr = mods_addr + len(modules) * MODULE_ENTRY.size
    entries = bytearray()
    strings = bytearray()
    for module in modules:
        if not 0 <= module.start <= module.end < 1 << 32:
            raise ValueError(f"module {module.string!r}: bad range "
                             f"{module.start:#x}..{module.end:#x}")
        string = _append_string(strings, strings_addr, module.string)
        entries += MODULE_ENTRY.pack(module.start, module.end, string, 0)
    blob += entries + strings
    return {"mods_count": len(modules), "mods_addr": mods_addr}
