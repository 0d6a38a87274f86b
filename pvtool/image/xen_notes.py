"""The "Xen" ELF notes: how a PV kernel tells the domain builder where to enter, where
its hypercall page goes and what it needs (xen/include/public/elfnote.h; read as Xen's
libelf reads them, xen/common/libelf/libelf-dominfo.c)."""

from dataclasses import dataclass, field

from pvtool.abi.xen import XEN_NOTE_NAME, ElfNote
from pvtool.errors import ImageError
from pvtool.image import elf_format
from pvtool.image.elf import ElfImage
from pvtool.image.elf_format import ELF32, ElfClass

NUMERIC_NOTES = frozenset({ElfNote.entry, ElfNote.hypercall_page, ElfNote.virt_base,
                           ElfNote.paddr_offset, ElfNote.init_p2m, ElfNote.hv_start_low})
STRING_NOTES = frozenset({ElfNote.xen_version, ElfNote.guest_os, ElfNote.guest_version,
                          ElfNote.loader, ElfNote.pae_mode, ElfNote.features,
                          ElfNote.bsd_symtab})
YES = "yes"  # BSD_SYMTAB's one value that counts (libelf-dominfo.c: strcmp(str, "yes"))
NUMERIC_SIZES = (1, 2, 4, 8)  # libelf's elf_note_numeric accepts exactly these
REQUIRED_MARK = "!"
FEATURE_SEPARATOR = "|"


@dataclass(frozen=True)
class XenNotes:
    """The notes with libelf's defaults applied: entry falls back to e_entry, VIRT_BASE
    and PADDR_OFFSET to 0 (elf_xen_addr_calc_check, for note-based kernels). `raw` holds
    exactly what the image carries, to tell a default from a given value."""

    entry: int
    hypercall_page: int | None
    virt_base: int
    paddr_offset: int
    xen_version: str | None
    guest_os: str | None
    guest_version: str | None
    loader: str | None
    pae_mode: str | None
    features: frozenset[str]
    required_features: frozenset[str]
    bsd_symtab: bool  # load the symbol table after the kernel (image/bsd_symtab.py)
    init_p2m: int | None  # where the kernel wants its p2m list mapped
    hv_start_low: int | None  # the lowest address the kernel leaves to the hypervisor
    raw: dict[ElfNote | int, bytes] = field(hash=False)


def parse_xen_notes(image: ElfImage) -> XenNotes | None:
    """The image's Xen notes, or None when it carries none. A later note of the same
    type overrides an earlier one, as in libelf."""
    raw: dict[ElfNote | int, bytes] = {}
    for note in image.notes:
        if note.name == XEN_NOTE_NAME:
            raw[_note_type(note.type)] = note.desc
    if not raw:
        return None
    numbers = {t: _numeric(image, t, raw[t]) for t in NUMERIC_NOTES if t in raw}
    strings = {t: _string(raw[t]) for t in STRING_NOTES if t in raw}
    features, required = _features(strings.get(ElfNote.features, ""))
    return XenNotes(
        entry=numbers.get(ElfNote.entry, image.entry),
        hypercall_page=numbers.get(ElfNote.hypercall_page),
        virt_base=numbers.get(ElfNote.virt_base, 0),
        paddr_offset=numbers.get(ElfNote.paddr_offset, 0),
        xen_version=strings.get(ElfNote.xen_version),
        guest_os=strings.get(ElfNote.guest_os),
        guest_version=strings.get(ElfNote.guest_version),
        loader=strings.get(ElfNote.loader),
        pae_mode=strings.get(ElfNote.pae_mode),
        features=features, required_features=required,
        bsd_symtab=strings.get(ElfNote.bsd_symtab) == YES,
        init_p2m=numbers.get(ElfNote.init_p2m), hv_start_low=numbers.get(ElfNote.hv_start_low),
        raw=raw)


def build_xen_notes(notes: list[tuple[ElfNote, bytes | int | str]],
                    elf_class: ElfClass = ELF32) -> bytes:
    """An SHT_NOTE section body of "Xen" notes, in the order given, for a kernel of
    ELF_CLASS. Integers become little-endian words of the class's address size, as
    Linux's xen-head.S writes ENTRY, HYPERCALL_PAGE, VIRT_BASE and PADDR_OFFSET with
    _ASM_PTR (.long on x86-32, .quad on x86-64); strings become NUL-terminated ASCII;
    bytes (a note of any other width) are taken as is."""
    return b"".join(elf_format.pack_note(XEN_NOTE_NAME, int(t), _encode(t, v, elf_class))
                    for t, v in notes)


def _encode(note_type: ElfNote, value: bytes | int | str, elf_class: ElfClass) -> bytes:
    if isinstance(value, bool):
        raise TypeError(f"Xen note {note_type.name}: use 0/1 or a string, not a bool")
    if isinstance(value, int):
        if not 0 <= value < elf_class.address_limit:
            raise ValueError(f"Xen note {note_type.name}: {value:#x} does not fit "
                             f"{elf_class.bits} bits")
        return value.to_bytes(elf_class.word_size, "little")
    if isinstance(value, str):
        return value.encode("ascii") + b"\0"
    return bytes(value)


def _note_type(number: int) -> ElfNote | int:
    try:
        return ElfNote(number)
    except ValueError:
        return number


def _numeric(image: ElfImage, note_type: ElfNote, desc: bytes) -> int:
    if len(desc) not in NUMERIC_SIZES:
        raise ImageError(f"{image.path}: Xen note {note_type.name.upper()} has a "
                         f"{len(desc)}-byte value; expected a 4- or 8-byte integer")
    return int.from_bytes(desc, "little")


def _string(desc: bytes) -> str:
    """A C string: everything up to the first NUL."""
    return desc.split(b"\0", 1)[0].decode("ascii", errors="replace")


def _features(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """FEATURES is '|'-separated; a leading '!' marks a feature the kernel cannot run
    without (Xen refuses to build the domain if it lacks it)."""
    names, required = set(), set()
    for item in filter(None, (part.strip() for part in text.split(FEATURE_SEPARATOR))):
        name = item.lstrip(REQUIRED_MARK)
        names.add(name)
        if item.startswith(REQUIRED_MARK):
            required.add(name)
    return frozenset(names), frozenset(required)
