"""The ELF32 little-endian file format as data: header layouts, the constants pvtool
uses, and the note record (System V gABI, "Object Files" and "Program Loading"; i386
psABI). The reader validates raw headers with these and the writer emits them, so each
layout is written once."""

import struct
from collections.abc import Iterator
from typing import NamedTuple

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
# Names for the machines a user is likely to hand us by mistake (gABI e_machine).
MACHINE_NAMES = {
    2: "SPARC", 3: "x86", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64", 22: "S/390",
    40: "ARM", 43: "SPARC V9", 62: "x86-64", 183: "AArch64", 243: "RISC-V",
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

PAGE_SIZE = 4096
NOTE_ALIGN = 4  # ELF32 note records are 4-byte aligned


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


EHDR = struct.Struct("<16sHHIIIIIHHHHHH")
PHDR = struct.Struct("<8I")
SHDR = struct.Struct("<10I")
NOTE_HEADER = struct.Struct("<3I")  # namesz, descsz, type


def align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def unpack_ehdr(data: bytes) -> Ehdr:
    return Ehdr(*EHDR.unpack_from(data, 0))


def unpack_phdr(data: bytes, offset: int) -> Phdr:
    return Phdr(*PHDR.unpack_from(data, offset))


def unpack_shdr(data: bytes, offset: int) -> Shdr:
    return Shdr(*SHDR.unpack_from(data, offset))


def machine_name(machine: int) -> str:
    return MACHINE_NAMES.get(machine, f"machine {machine}")


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
    fewer bytes than a note header at the end are padding."""
    pos = 0
    while pos + NOTE_HEADER.size <= len(blob):
        namesz, descsz, note_type = NOTE_HEADER.unpack_from(blob, pos)
        name_at = pos + NOTE_HEADER.size
        desc_at = name_at + align_up(namesz, alignment)
        end = desc_at + align_up(descsz, alignment)
        if desc_at + descsz > len(blob):
            raise ValueError(f"note at +{pos:#x} runs past the end of its section")
        name = blob[name_at:name_at + namesz].rstrip(b"\0")
        yield name, note_type, blob[desc_at:desc_at + descsz]
        pos = end
