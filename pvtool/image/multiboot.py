"""Multiboot 1 (specification 0.6.96): the header a kernel carries and the boot
information structure a loader hands it in EBX.

Section numbers below are the specification's: 3.1 "OS image format" (the header) and
3.3 "Boot information format" (the info structure).
"""

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from pvtool.errors import ImageError
from pvtool.image.elf import ElfImage

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

# 3.3: the info structure. Fields pvtool does not provide (a.out/ELF symbols, drives,
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
class MultibootInfo:
    info_addr: int  # physical address of the info structure (EBX); the blob starts here
    data: bytes  # info structure, memory map, strings and module list, in that order

    @property
    def end(self) -> int:
        return self.info_addr + len(self.data)


def find_header(image: ElfImage) -> MultibootHeader | None:
    """The first valid Multiboot header in the file, or None if there is none.

    A magic word whose checksum does not match is skipped, as GRUB skips it; if no
    valid header follows, the image is corrupt rather than merely not Multiboot."""
    data = image.data
    bad_offset = None
    last = min(len(data), HEADER_SEARCH_LIMIT) - _HEAD.size
    for offset in range(0, last + 1, HEADER_ALIGN):
        magic, flags, checksum = _HEAD.unpack_from(data, offset)
        if magic != HEADER_MAGIC:
            continue
        if (magic + flags + checksum) & 0xFFFFFFFF == 0:
            return _header_at(image, offset, flags, checksum)
        if bad_offset is None:
            bad_offset = offset
    if bad_offset is not None:
        raise ImageError(f"{image.path}: Multiboot header at file offset {bad_offset:#x} "
                         "has a bad checksum (magic + flags + checksum must be 0 mod 2^32)")
    return None


def _header_at(image: ElfImage, offset: int, flags: int, checksum: int) -> MultibootHeader:
    fields: dict[str, int] = {}
    optional = [(HEADER_AOUT_KLUDGE, _ADDRESSES, 12,
                 ("header_addr", "load_addr", "load_end_addr", "bss_end_addr", "entry_addr")),
                (HEADER_VIDEO_MODE, _VIDEO, 32, ("mode_type", "width", "height", "depth"))]
    for flag, layout, at, names in optional:
        if not flags & flag:
            continue
        end = offset + at + layout.size
        if end > min(len(image.data), HEADER_SEARCH_LIMIT):
            raise ImageError(f"{image.path}: Multiboot header at file offset {offset:#x} "
                             "is cut short: it must lie within the first 8192 bytes")
        fields.update(zip(names, layout.unpack_from(image.data, offset + at), strict=True))
    return MultibootHeader(offset=offset, flags=flags, checksum=checksum, **fields)


def build_info(base: int, *, mem_lower_kib: int, mem_upper_kib: int,
               mmap: Sequence[tuple[int, int, int]] = (), cmdline: bytes = b"",
               modules: Sequence[Module] = (), bootloader_name: bytes = b"pvtool",
               boot_device: int | None = None) -> MultibootInfo:
    """The info structure and everything it points to, laid out from physical `base`.

    mmap entries are (base_addr, length, type). The command line is always passed
    (empty is a valid command line); the memory map, modules and loader name only when
    given. Every pointer is an absolute physical address inside the returned blob."""
    if base % 4 or not 0 <= base < 1 << 32:
        raise ValueError(f"info base {base:#x} must be a 4-byte aligned 32-bit address")
    blob = bytearray(INFO_SIZE)
    fields = {"flags": INFO_MEMORY | INFO_CMDLINE,
              "mem_lower": mem_lower_kib, "mem_upper": mem_upper_kib}
    if boot_device is not None:
        fields["flags"] |= INFO_BOOT_DEVICE
        fields["boot_device"] = boot_device
    if mmap:
        fields["flags"] |= INFO_MEM_MAP
        fields["mmap_addr"] = base + len(blob)
        fields["mmap_length"] = len(mmap) * MMAP_ENTRY.size
        for addr, length, kind in mmap:
            blob += MMAP_ENTRY.pack(MMAP_ENTRY_SIZE_FIELD, addr, length, kind)
    fields["cmdline"] = _append_string(blob, base, cmdline)
    if bootloader_name:
        fields["flags"] |= INFO_BOOT_LOADER_NAME
        fields["boot_loader_name"] = _append_string(blob, base, bootloader_name)
    if modules:
        fields["flags"] |= INFO_MODS
        fields.update(_append_modules(blob, base, modules))
    for name, value in fields.items():
        struct.pack_into("<I", blob, INFO_FIELDS[name], value)
    if base + len(blob) > 1 << 32:
        raise ValueError(f"info structure at {base:#x} does not fit below 4 GiB")
    return MultibootInfo(info_addr=base, data=bytes(blob))


def _append_string(blob: bytearray, base: int, text: bytes) -> int:
    """Append text as a C string; return its physical address."""
    if b"\0" in text:
        raise ValueError(f"string {text!r} contains a NUL byte")
    addr = base + len(blob)
    blob += text + b"\0"
    return addr


def _append_modules(blob: bytearray, base: int, modules: Sequence[Module]) -> dict[str, int]:
    strings = [_append_string(blob, base, m.string) for m in modules]
    blob += bytes(-len(blob) % 4)
    mods_addr = base + len(blob)
    for module, string in zip(modules, strings, strict=True):
        if not 0 <= module.start <= module.end < 1 << 32:
            raise ValueError(f"module {module.string!r}: bad range "
                             f"{module.start:#x}..{module.end:#x}")
        blob += MODULE_ENTRY.pack(module.start, module.end, string, 0)
    return {"mods_count": len(modules), "mods_addr": mods_addr}
