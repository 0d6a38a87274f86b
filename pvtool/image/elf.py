"""Reading an x86 ELF kernel, 32-bit (EM_386 in ELF32) or 64-bit (EM_X86_64 in ELF64),
into plain frozen objects.

pyelftools parses the tables; this module decides what is acceptable. The identity
bytes are checked first so a user gets a precise reason (not ELF, another machine)
rather than a parser's complaint, every table and segment is bounds-checked against the
file, and no pyelftools exception ever leaves load_elf: a damaged image is an ImageError
with one line naming the file. The image says its class (`bits`, `machine`); a command
that cannot take a 64-bit kernel yet refuses it with require_32bit.
"""

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_ST_INFO_BIND, ENUM_ST_INFO_TYPE

from pvtool.errors import ImageError, InputMissingError, UnsupportedImageError
from pvtool.image import elf_format
from pvtool.image.elf_format import ELF32, Ehdr, ElfClass, machine_name
from pvtool.image.multiboot import header_in

MAX_IMAGE_SIZE = 256 << 20  # far beyond any guest kernel; guards against reading a disk
MAX_MEMORY_IMAGE = 1 << 30  # total PT_LOAD memsz; more is a corrupt header, not a kernel

# What pyelftools raises on malformed input: its own errors, its vendored construct's,
# and the plain Python errors its lazy parsing lets through.
# ElfN_Sym as an array: Elf32_Sym's fields in the order _symbol_entries yields them
# (st_other skipped); Elf64_Sym's in the file's order (gABI, "Symbol Table").
_SYM32 = struct.Struct("<IIIBxH")
_SYM64 = struct.Struct("<IBBHQQ")
# st_info's type and binding as pyelftools names them (the names the Symbol fields take)
_SYMBOL_TYPES = {v: k for k, v in ENUM_ST_INFO_TYPE.items() if k != "_default_"}
_SYMBOL_BINDINGS = {v: k for k, v in ENUM_ST_INFO_BIND.items() if k != "_default_"}

_PARSER_ERRORS = (ELFError, ConstructError, struct.error, ValueError, IndexError,
                  KeyError, OverflowError, ZeroDivisionError, UnicodeDecodeError, EOFError)


@dataclass(frozen=True)
class Segment(elf_format.SegmentFlags):
    """A PT_LOAD program header."""

    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    flags: int

    @property
    def end(self) -> int:
        return self.vaddr + self.memsz

    def contains(self, vaddr: int) -> bool:
        return self.vaddr <= vaddr < self.end


@dataclass(frozen=True)
class Section:
    name: str
    type: str  # lower-case gABI name without SHT_: "progbits", "nobits", "note", ...
    flags: int
    addr: int
    offset: int
    size: int
    align: int

    @property
    def executable(self) -> bool:
        return bool(self.flags & elf_format.SHF_EXECINSTR)


@dataclass(frozen=True)
class Symbol:
    name: str
    value: int
    size: int
    kind: str  # "func", "object", "notype", "section", "file", ...
    binding: str  # "global", "local", "weak"


@dataclass(frozen=True)
class Note:
    name: bytes  # without the terminating NUL, e.g. b"Xen", b"GNU"
    type: int
    desc: bytes


@dataclass(frozen=True)
class ElfImage:
    path: Path
    data: bytes
    elf_class: ElfClass
    entry: int
    segments: tuple[Segment, ...]
    sections: tuple[Section, ...]
    symbols: tuple[Symbol, ...]
    notes: tuple[Note, ...]

    @property
    def bits(self) -> int:
        """32 or 64: the width of the kernel's addresses and of its ELF class."""
        return self.elf_class.bits

    @property
    def machine(self) -> int:
        """e_machine: EM_386 for a 32-bit image, EM_X86_64 for a 64-bit one."""
        return self.elf_class.machine

    def segment_at(self, vaddr: int) -> Segment | None:
        """The PT_LOAD segment whose memory image holds vaddr."""
        return next((s for s in self.segments if s.contains(vaddr)), None)

    def read_virtual(self, vaddr: int, size: int) -> bytes:
        """The bytes a loader puts at vaddr..vaddr+size: file contents, then zeros up to
        each segment's memsz. The range may cross adjacent segments, never a hole."""
        if size < 0:
            raise ValueError(f"negative size {size}")
        out = bytearray()
        addr = vaddr
        while len(out) < size:
            seg = self.segment_at(addr)
            if seg is None:
                raise ImageError(f"{self.path}: {addr:#x} is not mapped by any loadable segment")
            take = min(size - len(out), seg.end - addr)
            start = addr - seg.vaddr
            in_file = self.data[seg.offset + start:seg.offset + min(start + take, seg.filesz)]
            out += in_file.ljust(take, b"\0")
            addr += take
        return bytes(out)

    def file_offset(self, vaddr: int) -> int | None:
        """Where vaddr's byte lives in the file, or None (unmapped, or bss)."""
        seg = self.segment_at(vaddr)
        if seg is None or vaddr - seg.vaddr >= seg.filesz:
            return None
        return seg.offset + (vaddr - seg.vaddr)

    def executable_regions(self) -> list[tuple[int, bytes]]:
        """(vaddr, file bytes) of every executable PT_LOAD segment."""
        return [(s.vaddr, self.data[s.offset:s.offset + s.filesz])
                for s in self.segments if s.executable and s.filesz]

    def function_symbols(self) -> list[Symbol]:
        return sorted((s for s in self.symbols if s.kind == "func"), key=lambda s: s.value)

    def find_symbol(self, name: str) -> Symbol | None:
        return next((s for s in self.symbols if s.name == name), None)

    def symbol_at(self, addr: int) -> Symbol | None:
        """The closest symbol covering addr (value <= addr < value+size, or a size-0
        label exactly at addr); at one address a function beats an object, an object
        beats a label. Section and file symbols never answer."""
        best = None
        for sym in self._address_symbols:
            if sym.value > addr:
                break
            if addr < sym.value + sym.size or (sym.size == 0 and sym.value == addr):
                best = sym
        return best

    def code_symbol(self, addr: int) -> Symbol | None:
        """The symbol covering ADDR, or else the last label before it in the same
        executable section (an assembly label has no size): what names a crash site."""
        covering = self.symbol_at(addr)
        if covering is not None:
            return covering
        section = next((s for s in self.sections
                        if s.executable and s.addr <= addr < s.addr + s.size), None)
        if section is None:
            return None
        labels = [s for s in self.symbols if s.kind in ("func", "notype")
                  and section.addr <= s.value <= addr]
        return max(labels, key=lambda s: s.value, default=None)

    @cached_property
    def _address_symbols(self) -> tuple[Symbol, ...]:
        kinds = {"func": 2, "object": 1, "notype": 0}
        named = [s for s in self.symbols if s.kind in kinds]
        return tuple(sorted(named, key=lambda s: (s.value, kinds[s.kind])))

    @property
    def end_vaddr(self) -> int:
        """One past the highest byte any PT_LOAD segment occupies in memory."""
        return max(s.end for s in self.segments)

    @property
    def phys_offset(self) -> int:
        """vaddr - paddr of the highest PT_LOAD segment: 0 for an identity-linked kernel,
        0xC0000000 for a classic higher-half one. New segments placed after the image
        follow this one."""
        last = max(self.segments, key=lambda s: s.vaddr)
        return last.vaddr - last.paddr

    def virt_to_phys(self, vaddr: int) -> int:
        seg = self.segment_at(vaddr)
        if seg is None:
            raise ImageError(f"{self.path}: {vaddr:#x} is not mapped by any loadable segment")
        return seg.paddr + (vaddr - seg.vaddr)


def load_elf(path: Path) -> ElfImage:
    """Read and check an x86 ELF executable, 32- or 64-bit."""
    path = Path(path)
    data = read_image(path)
    elf_class, header = _check_ident(path, data)
    try:
        return _parse(path, data, elf_class, header)
    except _PARSER_ERRORS as exc:
        raise ImageError(f"{path}: corrupt ELF file ({_describe(exc)})") from exc


def require_32bit(image: ElfImage) -> ElfImage:
    """IMAGE, if it is a 32-bit kernel. Every command that cannot take an x86-64 kernel
    yet (run --trap, and run of one without Xen notes) calls this after loading,
    so a 64-bit image is refused in one place, in the words load_elf uses for a 64-bit
    image of another machine."""
    if image.bits != ELF32.bits:
        raise _not_32bit(image.path, machine_name(image.machine))
    return image


def _not_32bit(path: Path, what: str) -> UnsupportedImageError:
    return UnsupportedImageError(
        f"{path}: 64-bit ELF ({what}); only 32-bit x86 images are supported")


def read_image(path: Path) -> bytes:
    """The bytes of the image file at PATH, or one line saying why they cannot be had."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_IMAGE_SIZE + 1)
    except FileNotFoundError:
        raise InputMissingError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputMissingError(f"{path}: is a directory, not an image file") from None
    except PermissionError:
        raise InputMissingError(f"{path}: permission denied") from None
    except OSError as exc:
        raise InputMissingError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_IMAGE_SIZE:
        raise ImageError(f"{path}: larger than {MAX_IMAGE_SIZE >> 20} MiB, "
                         "not a guest kernel image")
    return data


def _check_ident(path: Path, data: bytes) -> tuple[ElfClass, Ehdr]:
    """Refuse anything that is not a little-endian x86 executable of its class:
    EM_386 in ELF32, EM_X86_64 in ELF64."""
    elf_class = _check_class(path, data)
    if len(data) < elf_class.ehdr.size:
        raise ImageError(f"{path}: truncated ELF header "
                         f"({len(data)} of {elf_class.ehdr.size} bytes)")
    header = elf_class.ehdr.unpack(data)
    if header.machine != elf_class.machine:
        raise UnsupportedImageError(
            f"{path}: {elf_class.bits}-bit ELF for {machine_name(header.machine)}; "
            "only 32-bit x86 images are supported")
    if header.type not in (elf_format.ET_EXEC, elf_format.ET_DYN):
        raise UnsupportedImageError(
            f"{path}: ELF type {header.type} is not a linked executable "
            "(a relocatable object or core file?)")
    _check_tables(path, data, elf_class, header)
    return elf_class, header


def _check_class(path: Path, data: bytes) -> ElfClass:
    """The identity bytes: ELF magic, a class pvtool reads, little-endian encoding. An
    ELF64 is refused here, before its header is read, unless it is for x86-64."""
    if not data:
        raise ImageError(f"{path}: empty file, not an ELF image")
    if not data.startswith(elf_format.ELF_MAGIC):
        raise _not_elf(path, data)
    if len(data) <= elf_format.EI_DATA:
        raise ImageError(f"{path}: truncated ELF header ({len(data)} bytes)")
    ident, encoding = data[elf_format.EI_CLASS], data[elf_format.EI_DATA]
    at = elf_format.E_MACHINE_OFFSET
    machine = int.from_bytes(data[at:at + 2], "little") if len(data) >= at + 2 else None
    if ident == elf_format.ELFCLASS64 and machine != elf_format.ELF64.machine:
        raise _not_32bit(path, machine_name(machine) if machine is not None else "truncated")
    elf_class = elf_format.CLASSES.get(ident)
    if elf_class is None:
        raise ImageError(f"{path}: invalid ELF class {ident}")
    if encoding != elf_format.ELFDATA2LSB:
        raise UnsupportedImageError(
            f"{path}: big-endian or invalid data encoding ({encoding}); "
            "only 32-bit x86 images are supported")
    return elf_class


def _not_elf(path: Path, data: bytes) -> ImageError:
    """The refusal of a file without the ELF magic. A flat binary that QEMU's -kernel
    boots (a Multiboot header with the a.out kludge, image/flat.py) is well formed, but
    only the Multiboot boots take it."""
    try:
        header = header_in(path, data)
    except ImageError:  # a damaged header: the file is not what this command takes
        header = None
    if header is not None and header.aout_kludge:
        return UnsupportedImageError(
            f"{path}: a flat Multiboot binary, not an ELF file; only run --native and "
            "run --trap boot one, this command needs an ELF kernel")
    return ImageError(f"{path}: not an ELF file (no \\x7fELF magic)")


def _check_tables(path: Path, data: bytes, elf_class: ElfClass, h: Ehdr) -> None:
    """The program and section header tables must lie inside the file."""
    phdr_size, shdr_size = elf_class.phdr.size, elf_class.shdr.size
    if h.phnum == elf_format.PN_XNUM:
        raise UnsupportedImageError(f"{path}: extended program header numbering")
    if h.phnum and h.phentsize != phdr_size:
        raise ImageError(f"{path}: program header entry size {h.phentsize}, "
                         f"expected {phdr_size}")
    if h.phoff + h.phnum * phdr_size > len(data):
        raise ImageError(f"{path}: program header table runs past the end of the file "
                         f"({h.phnum} entries at {h.phoff:#x}, file is {len(data)} bytes)")
    if h.shoff == 0:
        return
    if h.shnum == 0 or h.shstrndx >= elf_format.SHN_LORESERVE:
        raise UnsupportedImageError(f"{path}: extended section numbering")
    if h.shentsize != shdr_size:
        raise ImageError(f"{path}: section header entry size {h.shentsize}, "
                         f"expected {shdr_size}")
    if h.shoff + h.shnum * shdr_size > len(data):
        raise ImageError(f"{path}: section header table runs past the end of the file "
                         f"({h.shnum} entries at {h.shoff:#x}, file is {len(data)} bytes)")
    if h.shstrndx >= h.shnum:
        raise ImageError(f"{path}: section name table index {h.shstrndx} "
                         f"out of range ({h.shnum} sections)")


def _parse(path: Path, data: bytes, elf_class: ElfClass, header: Ehdr) -> ElfImage:
    elf = ELFFile(io.BytesIO(data))
    loads, note_blobs = _segments(path, data, elf_class, elf)
    if not loads:
        raise UnsupportedImageError(f"{path}: no loadable (PT_LOAD) segments")
    _check_overlaps(path, loads)
    total = sum(s.memsz for s in loads)
    if total > MAX_MEMORY_IMAGE:
        raise ImageError(f"{path}: loadable segments claim {total >> 20} MiB of memory, "
                         f"more than any guest kernel (limit {MAX_MEMORY_IMAGE >> 20} MiB)")
    sections = _sections(path, data, elf_class, elf, header) if header.shoff else ()
    notes_from_sections = [
        (data[s.offset:s.offset + s.size], elf_format.note_alignment(s.align))
        for s in sections if s.type == "note"]
    return ElfImage(
        path=path, data=data, elf_class=elf_class, entry=header.entry,
        segments=tuple(loads), sections=sections,
        symbols=_symbols(path, data, elf_class, elf, sections) if header.shoff else (),
        notes=_notes(path, note_blobs + notes_from_sections))


def _segments(path: Path, data: bytes, elf_class: ElfClass,
              elf: ELFFile) -> tuple[list[Segment], list[tuple[bytes, int]]]:
    """PT_LOAD segments, and the (body, alignment) of each PT_NOTE."""
    loads, notes = [], []
    for index, seg in enumerate(elf.iter_segments()):
        h = seg.header
        if h.p_type not in ("PT_LOAD", "PT_NOTE"):
            continue
        where = f"segment {index} ({h.p_type[3:]} at {h.p_vaddr:#x})"
        if h.p_offset + h.p_filesz > len(data):
            raise ImageError(
                f"{path}: {where} ends at file offset {h.p_offset + h.p_filesz:#x}, "
                f"past the end of the file ({len(data)} bytes): truncated or corrupt")
        if h.p_type == "PT_NOTE":
            notes.append((data[h.p_offset:h.p_offset + h.p_filesz],
                          elf_format.note_alignment(h.p_align)))
            continue
        if h.p_filesz > h.p_memsz:
            raise ImageError(f"{path}: {where} has more file bytes ({h.p_filesz:#x}) "
                             f"than memory bytes ({h.p_memsz:#x})")
        if max(h.p_vaddr, h.p_paddr) + h.p_memsz > elf_class.address_limit:
            raise ImageError(f"{path}: {where} of {h.p_memsz:#x} bytes runs past "
                             f"{elf_class.address_space}")
        loads.append(Segment(offset=h.p_offset, vaddr=h.p_vaddr, paddr=h.p_paddr,
                             filesz=h.p_filesz, memsz=h.p_memsz, flags=h.p_flags))
    return loads, notes


def _check_overlaps(path: Path, loads: list[Segment]) -> None:
    """A loader cannot honour two segments claiming the same virtual or physical bytes."""
    for base in ("vaddr", "paddr"):
        spans = sorted((getattr(s, base), getattr(s, base) + s.memsz) for s in loads
                       if s.memsz)
        for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False):
            if next_start < end:
                raise ImageError(f"{path}: loadable segments overlap at {base} "
                                 f"{next_start:#x} (previous one ends at {end:#x})")


def _sections(path: Path, data: bytes, elf_class: ElfClass, elf: ELFFile,
              header: Ehdr) -> tuple[Section, ...]:
    layout = elf_class.shdr
    headers = [layout.unpack(data, header.shoff + i * layout.size)
               for i in range(header.shnum)]
    empty = (elf_format.SHT_NULL, elf_format.SHT_NOBITS)
    for index, h in enumerate(headers):  # all in bounds before any name is read
        if h.type not in empty and h.offset + h.size > len(data):
            raise ImageError(f"{path}: section {index} runs past the end of the file "
                             f"({len(data)} bytes): truncated or corrupt")
    sections = []
    for index, h in enumerate(headers):
        sec = elf.get_section(index)
        sections.append(Section(name=sec.name, type=_enum_name(sec["sh_type"], "SHT_"),
                                flags=h.flags, addr=h.addr, offset=h.offset, size=h.size,
                                align=h.addralign))
    return tuple(sections)


def _symbols(path: Path, data: bytes, elf_class: ElfClass, elf: ELFFile,
             sections: tuple[Section, ...]) -> tuple[Symbol, ...]:
    index = next((i for i, s in enumerate(sections) if s.type == "symtab"), None)
    if index is None:
        return ()
    table = elf.get_section(index)  # pyelftools checks the entry size and linked strtab
    if table["sh_entsize"] != elf_class.symbol_size:
        raise ImageError(f"{path}: .symtab entry size {table['sh_entsize']}, "
                         f"expected {elf_class.symbol_size}")
    # within the file: _sections refused a section that runs past its end
    start, size = table["sh_offset"], table.num_symbols() * elf_class.symbol_size
    strings = table.stringtable["sh_offset"]
    symbols = []
    for name_at, info, shndx, value, length in _symbol_entries(elf_class, data, start, size):
        name = _c_string(data, strings + name_at)
        if not name or shndx == elf_format.SHN_UNDEF:
            continue
        symbols.append(Symbol(name=name, value=value, size=length,
                              kind=_enum_name(_SYMBOL_TYPES.get(info & 0xF, info & 0xF),
                                              "STT_"),
                              binding=_enum_name(_SYMBOL_BINDINGS.get(info >> 4, info >> 4),
                                                 "STB_")))
    return tuple(symbols)


def _symbol_entries(elf_class: ElfClass, data: bytes, start: int,
                    size: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(st_name, st_info, st_shndx, st_value, st_size) of each entry of the table at
    START, read as one array: pyelftools' per-symbol parse costs ~0.2 ms a symbol."""
    table = data[start:start + size]
    if elf_class.bits == 32:
        return ((name, info, shndx, value, length)
                for name, value, length, info, shndx in _SYM32.iter_unpack(table))
    return ((name, info, shndx, value, length)
            for name, info, _, shndx, value, length in _SYM64.iter_unpack(table))


def _c_string(data: bytes, at: int) -> str:
    """The NUL-terminated string at AT, as pyelftools' StringTableSection.get_string
    reads it: '' where no NUL ends it, undecodable bytes replaced."""
    end = data.find(b"\0", at)
    return data[at:end].decode("utf-8", errors="replace") if end > at else ""


def _enum_name(value: str | int, prefix: str) -> str:
    """pyelftools' "STT_FUNC" as "func"; a number it has no name for in hex."""
    return value[len(prefix):].lower() if isinstance(value, str) else f"{value:#x}"


def _notes(path: Path, blobs: list[tuple[bytes, int]]) -> tuple[Note, ...]:
    """Every note once: a linked image usually has each both in a PT_NOTE segment and
    in the SHT_NOTE section it came from."""
    seen: dict[Note, None] = {}
    for blob, align in blobs:
        try:
            for name, note_type, desc in elf_format.iter_notes(blob, align):
                seen.setdefault(Note(name, note_type, desc))
        except ValueError as exc:
            raise ImageError(f"{path}: corrupt note: {exc}") from None
    return tuple(seen)


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
