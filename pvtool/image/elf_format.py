"""The ELF file format as data, for both classes: the constants pvtool uses, the header
layouts of ELF32 and ELF64 as one small table per class, and the note record (System V
gABI, "Object Files" and "Program Loading"; the i386 and x86-64 psABIs). The reader
validates raw headers with these and the writer emits them, so each layout is written
once and the code that uses them does not care which class it holds."""

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

ELF_MAGIC = b"\x7fELF"
EI_CLASS = 4
EI_DATA = 5
E_MACHINE_OFFSET = 18  # the same in ELF32 and ELF64 headers
ELFCLASS32 = 1
ELFCLASS64 = 2
ELFDATA2LSB = 1

ET_REL = 1
ET_EXEC = 2
ET_DYN = 3

EM_386 = 3
EM_X86_64 = 62
# Names for the machines a user is likely to hand us by mistake (gABI e_machine).
MACHINE_NAMES = {
    2: "SPARC", EM_386: "x86", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64", 22: "S/390",
    40: "ARM", 43: "SPARC V9", EM_X86_64: "x86-64", 183: "AArch64", 243: "RISC-V",
}

PT_LOAD = 1
PT_NOTE = 4
PT_PHDR = 6
PF_X = 1
PF_W = 2
PF_R = 4
PN_XNUM = 0xFFFF  # e_phnum value meaning "the real count is elsewhere"

SHT_NULL = 0
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_NOTE = 7
SHT_NOBITS = 8
SHF_WRITE = 1
SHF_ALLOC = 2
SHF_EXECINSTR = 4
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00  # e_shnum / e_shstrndx at or above this use extended numbering

# Note records are 4-byte aligned in both classes: GNU ld gives a `.balign 4` note
# section sh_addralign 4 and its PT_NOTE p_align 4 in an ELF64 too, Linux's ELFNOTE()
# uses .balign 4 on x86-64, and Xen's libelf rounds namesz and descsz up to 4. Only a
# note section or segment aligned to 8 (.note.gnu.property in ELF64) pads to 8, as
# readelf reads it.
NOTE_ALIGN = 4
WIDE_NOTE_ALIGN = 8


class SegmentFlags:
    """readable/writable/executable from a PT_LOAD's p_flags (a `flags` attribute)."""

    flags: int

    @property
    def readable(self) -> bool:
        return bool(self.flags & PF_R)

    @property
    def writable(self) -> bool:
        return bool(self.flags & PF_W)

    @property
    def executable(self) -> bool:
        return bool(self.flags & PF_X)


class Ehdr(NamedTuple):
    ident: bytes
    type: int
    machine: int
    version: int
    entry: int
    phoff: int
    shoff: int
    flags: int
    ehsize: int
    phentsize: int
    phnum: int
    shentsize: int
    shnum: int
    shstrndx: int


class Phdr(NamedTuple):
    type: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    flags: int
    align: int


class Shdr(NamedTuple):
    name: int
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    addralign: int
    entsize: int


Header = TypeVar("Header", Ehdr, Phdr, Shdr)


class Layout(Generic[Header]):
    """How one class stores one header: its struct, and the order of its fields in the
    file when that differs from the record's (Elf64_Phdr puts p_flags second)."""

    def __init__(self, record: type[Header], fmt: str, order: tuple[str, ...] = ()):
        self.record = record
        self.struct = struct.Struct(fmt)
        self.order = order or record._fields

    @property
    def size(self) -> int:
        return self.struct.size

    def unpack(self, data: bytes, offset: int = 0) -> Header:
        return self.record(**dict(zip(self.order, self.struct.unpack_from(data, offset),
                                      strict=True)))

    def pack(self, header: Header) -> bytes:
        return self.struct.pack(*(getattr(header, name) for name in self.order))


@dataclass(frozen=True)
class ElfClass:
    """One ELF class as pvtool reads and writes it: the x86 machine it holds, the
    width of its addresses and its header layouts."""

    ident: int  # e_ident[EI_CLASS]
    bits: int
    machine: int
    address_space: str  # how the end of the address space is named in messages
    ehdr: Layout[Ehdr]
    phdr: Layout[Phdr]
    shdr: Layout[Shdr]
    symbol_size: int  # sizeof(ElfN_Sym)

    @property
    def word_size(self) -> int:
        """Bytes in an address; also the natural alignment of the header tables."""
        return self.bits // 8

    @property
    def address_limit(self) -> int:
        return 1 << self.bits


ELF32 = ElfClass(
    ident=ELFCLASS32, bits=32, machine=EM_386, address_space="4 GiB",
    ehdr=Layout(Ehdr, "<16sHHIIIIIHHHHHH"), phdr=Layout(Phdr, "<8I"),
    shdr=Layout(Shdr, "<10I"), symbol_size=16)
ELF64 = ElfClass(
    ident=ELFCLASS64, bits=64, machine=EM_X86_64, address_space="16 EiB",
    ehdr=Layout(Ehdr, "<16sHHIQQQIHHHHHH"),
    phdr=Layout(Phdr, "<IIQQQQQQ",
                ("type", "flags", "offset", "vaddr", "paddr", "filesz", "memsz", "align")),
    shdr=Layout(Shdr, "<IIQQQQIIQQ"), symbol_size=24)
CLASSES = {c.ident: c for c in (ELF32, ELF64)}

NOTE_HEADER = struct.Struct("<3I")  # namesz, descsz, type: 32-bit words in both classes


def align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def machine_name(machine: int) -> str:
    return MACHINE_NAMES.get(machine, f"machine {machine}")


def note_alignment(align: int) -> int:
    """The padding of the notes in a section or segment aligned to ALIGN."""
    return WIDE_NOTE_ALIGN if align == WIDE_NOTE_ALIGN else NOTE_ALIGN


def pack_note(name: bytes, note_type: int, desc: bytes) -> bytes:
    """One note record: namesz, descsz, type, then the NUL-terminated name and the
    descriptor, each padded to 4 bytes (gABI "Note Section")."""
    name_z = name + b"\0"
    return (NOTE_HEADER.pack(len(name_z), len(desc), note_type)
            + name_z.ljust(align_up(len(name_z), NOTE_ALIGN), b"\0")
            + desc.ljust(align_up(len(desc), NOTE_ALIGN), b"\0"))


def iter_notes(blob: bytes, alignment: int = NOTE_ALIGN) -> Iterator[tuple[bytes, int, bytes]]:
    """(name without its NUL, type, descriptor) for each record of a note section or
    segment body. Raises ValueError on a record that runs past the end of the blob;
    fewer bytes than a note header at the end are padding. The descriptor starts at the
    first aligned offset after the name and the next record at the first after the
    descriptor, counted from the record's start (binutils' ELF_NOTE_DESC_OFFSET and
    ELF_NOTE_NEXT_OFFSET): with 8-byte alignment a 4-byte name needs no padding."""
    pos = 0
    while pos + NOTE_HEADER.size <= len(blob):
        namesz, descsz, note_type = NOTE_HEADER.unpack_from(blob, pos)
        name_at = pos + NOTE_HEADER.size
        desc_at = pos + align_up(NOTE_HEADER.size + namesz, alignment)
        end = pos + align_up(desc_at - pos + descsz, alignment)
        if desc_at + descsz > len(blob):
            raise ValueError(f"note at +{pos:#x} runs past the end of its section")
        name = blob[name_at:name_at + namesz].rstrip(b"\0")
        yield name, note_type, blob[desc_at:desc_at + descsz]
        pos = end
