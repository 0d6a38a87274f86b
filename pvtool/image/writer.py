"""Writing the patched ELF, in the class of the original (ELF32 or ELF64).

The original file is kept byte for byte where it was (the Multiboot header must stay
within the first 8 KiB, and every existing offset stays valid); patches overwrite bytes
in place, and everything new is appended: the added sections' contents at page-aligned
offsets congruent to their addresses, the notes, an extended .shstrtab, then a new
program header table (the originals plus the new PT_LOAD and PT_NOTE entries) and a new
section header table. Only the ELF header is rewritten to point at the new tables.

The result is checked before it gets its name: it is written to a temporary file in the
destination directory, fsync'ed, read back with load_elf and compared with what was
asked for, and only then renamed over OUT. On any failure the temporary file is removed
and OUT is left as it was.
"""

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pvtool.errors import ImageError, OutputError, PatchError
from pvtool.image import elf_format
from pvtool.image.elf import ElfImage, Segment, load_elf
from pvtool.image.elf_format import Ehdr, Phdr, Shdr
from pvtool.image.multiboot import find_header
from pvtool.interrupts import held
from pvtool.x86.paging import PAGE_SIZE

NOTES_SECTION = ".note.Xen"
_ALL_FLAGS = elf_format.PF_R | elf_format.PF_W | elf_format.PF_X


@dataclass(frozen=True)
class AddedSection(elf_format.SegmentFlags):
    """New contents for the image: one PT_LOAD segment and one section header."""

    name: str
    vaddr: int  # page-aligned
    data: bytes  # file-backed bytes; memsz - len(data) zero bytes follow in memory
    memsz: int
    flags: int  # elf_format.PF_R | PF_W | PF_X
    paddr: int | None = None  # default: vaddr less the image's virtual-physical offset

    def physical(self, image: ElfImage) -> int:
        return self.vaddr - image.phys_offset if self.paddr is None else self.paddr


@dataclass
class _Layout:
    """The output under construction: file bytes plus the headers to append."""

    data: bytearray
    phdrs: list[Phdr] = field(default_factory=list)
    shdrs: list[tuple[str, Shdr]] = field(default_factory=list)  # name set later

    def append(self, blob: bytes, alignment: int) -> int:
        """Append blob at the next offset aligned to alignment; return the offset."""
        offset = elf_format.align_up(len(self.data), alignment)
        self.data += bytes(offset - len(self.data)) + blob
        return offset


def write_patched_elf(original: ElfImage, out: Path, *, patches: dict[int, bytes],
                      added: list[AddedSection], notes: bytes | None,
                      check: Callable[[ElfImage], None] | None = None) -> None:
    """Write original with patches applied and added sections and notes appended to OUT,
    atomically, refusing to overwrite the input. CHECK, if given, sees the written image
    before it is renamed into place and may raise to keep it from landing."""
    out = Path(out)
    check_destination(original, out)
    blob = build_patched_elf(original, patches=patches, added=added, notes=notes)

    def verify(tmp: Path) -> None:
        written = _verify(original, tmp, blob, patches, added, notes)
        if check is not None:
            check(written)

    write_atomically(out, blob, _mode_of(original.path), verify)


def build_patched_elf(original: ElfImage, *, patches: dict[int, bytes],
                      added: list[AddedSection], notes: bytes | None) -> bytes:
    """The bytes write_patched_elf writes, or a PatchError saying why there are none."""
    header = original.elf_class.ehdr.unpack(original.data)
    if any(p.type == elf_format.PT_PHDR for p in _original_phdrs(original, header)):
        raise PatchError(f"{original.path}: has a PT_PHDR segment; its program header "
                         "table is loaded into memory and cannot be moved")
    layout = _Layout(bytearray(original.data))
    _apply_patches(original, header, layout.data, patches)
    added = sorted(added, key=lambda a: a.vaddr)
    _check_added(original, added)
    for section in added:
        _append_section(original, layout, section)
    if notes:
        _append_notes(layout, notes)
    return _append_tables(original, header, layout)


def _original_phdrs(image: ElfImage, header: Ehdr) -> list[Phdr]:
    layout = image.elf_class.phdr
    return [layout.unpack(image.data, header.phoff + i * layout.size)
            for i in range(header.phnum)]


def _original_shdrs(image: ElfImage, header: Ehdr) -> list[Shdr]:
    if not header.shoff:
        return []
    layout = image.elf_class.shdr
    return [layout.unpack(image.data, header.shoff + i * layout.size)
            for i in range(header.shnum)]


# ---- patches -------------------------------------------------------------------------

def _apply_patches(image: ElfImage, header: Ehdr, data: bytearray,
                   patches: dict[int, bytes]) -> None:
    """Overwrite file-backed segment bytes; the ELF header and program header table
    are off limits even where a segment maps them, since they are rewritten."""
    protected = [(0, header.ehsize),
                 (header.phoff, header.phoff + header.phnum * image.elf_class.phdr.size)]
    previous_end = None
    for vaddr, replacement in sorted(patches.items()):
        where = f"patch at {vaddr:#x} ({len(replacement)} bytes)"
        if previous_end is not None and vaddr < previous_end:
            raise PatchError(f"{image.path}: {where} overlaps the previous patch")
        previous_end = vaddr + len(replacement)
        seg = _file_backed_segment(image, vaddr, len(replacement))
        if seg is None:
            raise PatchError(f"{image.path}: {where} is not inside the file-backed bytes "
                             "of one loadable segment")
        offset = seg.offset + (vaddr - seg.vaddr)
        if any(offset < end and start < offset + len(replacement)
               for start, end in protected):
            raise PatchError(f"{image.path}: {where} would overwrite the ELF headers")
        data[offset:offset + len(replacement)] = replacement


def _file_backed_segment(image: ElfImage, vaddr: int, size: int) -> Segment | None:
    for seg in image.segments:
        if seg.vaddr <= vaddr and vaddr + size <= seg.vaddr + seg.filesz:
            return seg
    return None


# ---- added sections and notes ---------------------------------------------------------

def _check_added(image: ElfImage, added: list[AddedSection]) -> None:
    """Reject a section a loader could not honour: misaligned, overlapping the image or
    another new section (to page granularity, virtually and physically), or badly named."""
    taken = {s.name for s in image.sections} | {NOTES_SECTION}
    spans = [(s.vaddr, s.paddr, s.memsz, f"segment at {s.vaddr:#x}") for s in image.segments]
    for sec in added:
        _check_section_fields(image, sec, taken)
        taken.add(sec.name)
        paddr = sec.physical(image)
        for vaddr, other_paddr, memsz, what in spans:
            if (_pages_overlap(sec.vaddr, sec.memsz, vaddr, memsz)
                    or _pages_overlap(paddr, sec.memsz, other_paddr, memsz)):
                raise PatchError(f"{image.path}: added section {sec.name} at "
                                 f"{sec.vaddr:#x} shares pages with the {what}")
        spans.append((sec.vaddr, paddr, sec.memsz, f"added section {sec.name}"))


def _check_section_fields(image: ElfImage, sec: AddedSection, taken: set[str]) -> None:
    where = f"{image.path}: added section {sec.name!r}"
    if not sec.name or not sec.name.isascii() or "\0" in sec.name:
        raise PatchError(f"{where}: a section name must be non-empty ASCII without NUL")
    if sec.name in taken:
        raise PatchError(f"{where}: the image already has a section of that name")
    if sec.vaddr % PAGE_SIZE:
        raise PatchError(f"{where}: address {sec.vaddr:#x} is not page-aligned")
    if sec.memsz < max(len(sec.data), 1):
        raise PatchError(f"{where}: memsz {sec.memsz:#x} is smaller than its "
                         f"{len(sec.data)} bytes of data (or zero)")
    if sec.flags & ~_ALL_FLAGS:
        raise PatchError(f"{where}: flags {sec.flags:#x} are not PF_R/PF_W/PF_X")
    paddr = sec.physical(image)
    if (min(sec.vaddr, paddr) < 0
            or max(sec.vaddr, paddr) + sec.memsz > image.elf_class.address_limit):
        raise PatchError(f"{where}: {sec.vaddr:#x} (physical {paddr:#x}) + "
                         f"{sec.memsz:#x} bytes does not fit the {image.bits}-bit "
                         "address space")


def _pages_overlap(start: int, size: int, other: int, other_size: int) -> bool:
    if not size or not other_size:
        return False
    first, last = start // PAGE_SIZE, (start + size - 1) // PAGE_SIZE
    other_first, other_last = other // PAGE_SIZE, (other + other_size - 1) // PAGE_SIZE
    return first <= other_last and other_first <= last


def _append_section(image: ElfImage, layout: _Layout, sec: AddedSection) -> None:
    # Page-aligned offset for a page-aligned vaddr: offset == vaddr (mod 4096), as
    # PT_LOAD requires (gABI "Program Header": p_offset % p_align == p_vaddr % p_align).
    offset = layout.append(sec.data, PAGE_SIZE)
    paddr = sec.physical(image)
    layout.phdrs.append(Phdr(elf_format.PT_LOAD, offset, sec.vaddr, paddr, len(sec.data),
                             sec.memsz, sec.flags, PAGE_SIZE))
    sh_flags = (elf_format.SHF_ALLOC | (elf_format.SHF_WRITE if sec.writable else 0)
                | (elf_format.SHF_EXECINSTR if sec.executable else 0))
    sh_type, size = (elf_format.SHT_PROGBITS, len(sec.data)) if sec.data else \
        (elf_format.SHT_NOBITS, sec.memsz)
    layout.shdrs.append((sec.name, Shdr(0, sh_type, sh_flags, sec.vaddr, offset, size,
                                        0, 0, PAGE_SIZE, 0)))


def _append_notes(layout: _Layout, notes: bytes) -> None:
    """A PT_NOTE segment (what Xen's libelf reads, by file offset) and a .note.Xen
    section (what readelf -n and people read). Neither is loaded into memory. Both are
    4-byte aligned in either class, as GNU ld lays out a .note.Xen section."""
    try:
        list(elf_format.iter_notes(notes))
    except ValueError as exc:
        raise PatchError(f"the notes to add are malformed: {exc}") from None
    align = elf_format.NOTE_ALIGN
    offset = layout.append(notes, align)
    layout.phdrs.append(Phdr(elf_format.PT_NOTE, offset, 0, 0, len(notes), len(notes),
                             elf_format.PF_R, align))
    layout.shdrs.append((NOTES_SECTION, Shdr(0, elf_format.SHT_NOTE, 0, 0, offset,
                                             len(notes), 0, 0, align, 0)))


# ---- header tables ---------------------------------------------------------------------

def _append_tables(image: ElfImage, header: Ehdr, layout: _Layout) -> bytes:
    """The new program and section header tables, at the natural alignment of the
    class (gABI "Data Representation"), and the ELF header pointing at them."""
    shdrs, shstrndx = _section_table(image, header, layout)
    phdrs = _program_table(_original_phdrs(image, header), layout.phdrs)
    if len(phdrs) >= elf_format.PN_XNUM or len(shdrs) >= elf_format.SHN_LORESERVE:
        raise PatchError(f"{image.path}: too many program or section headers")
    elf_class = image.elf_class
    phoff = layout.append(b"".join(map(elf_class.phdr.pack, phdrs)), elf_class.word_size)
    shoff = layout.append(b"".join(map(elf_class.shdr.pack, shdrs)), elf_class.word_size)
    new_header = header._replace(
        phoff=phoff, phnum=len(phdrs), phentsize=elf_class.phdr.size,
        shoff=shoff, shnum=len(shdrs), shentsize=elf_class.shdr.size, shstrndx=shstrndx)
    layout.data[:elf_class.ehdr.size] = elf_class.ehdr.pack(new_header)
    return bytes(layout.data)


def _program_table(original: list[Phdr], new: list[Phdr]) -> list[Phdr]:
    """Originals, new PT_LOADs after the last original PT_LOAD, new PT_NOTE last; then
    every PT_LOAD slot refilled in vaddr order, since the gABI wants PT_LOAD entries
    sorted by p_vaddr."""
    load = elf_format.PT_LOAD
    loads = [p for p in new if p.type == load]
    others = [p for p in new if p.type != load]
    last_load = max((i for i, p in enumerate(original) if p.type == load), default=-1)
    table = original[:last_load + 1] + loads + original[last_load + 1:] + others
    ordered = iter(sorted((p for p in table if p.type == load), key=lambda p: p.vaddr))
    return [next(ordered) if p.type == load else p for p in table]


def _section_table(image: ElfImage, header: Ehdr,
                   layout: _Layout) -> tuple[list[Shdr], int]:
    """The original section headers with .shstrtab moved to an extended copy at the end
    of the file, then the new ones. Returns (headers, index of .shstrtab)."""
    shdrs = _original_shdrs(image, header) or [Shdr._make([0] * len(Shdr._fields))]
    shstrndx = header.shstrndx if header.shoff and header.shstrndx else None
    if shstrndx is None:  # no names to keep: old sh_name values pointed nowhere
        shdrs = [s._replace(name=0) for s in shdrs]
        strings = bytearray(b"\0")
        shstrtab_name = len(strings)
        strings += b".shstrtab\0"
    else:
        old = shdrs[shstrndx]
        strings = bytearray(image.data[old.offset:old.offset + old.size])
    new = []
    for name, shdr in layout.shdrs:
        new.append(shdr._replace(name=len(strings)))
        strings += name.encode("ascii") + b"\0"
    offset = layout.append(bytes(strings), 1)
    if shstrndx is None:
        shstrndx = len(shdrs)
        shdrs.append(Shdr(shstrtab_name, elf_format.SHT_STRTAB, 0, 0, offset, len(strings),
                          0, 0, 1, 0))
    else:
        shdrs[shstrndx] = shdrs[shstrndx]._replace(offset=offset, size=len(strings))
    return shdrs + new, shstrndx


# ---- writing and verifying --------------------------------------------------------------

def check_output_file(out: Path) -> None:
    """OUT names a file that can be created: not a directory, in a folder that exists.
    Every command asks before its work, not after a minute of it."""
    if out.is_dir() or not out.name:
        raise OutputError(f"{out}: is a directory; name a file")
    if not out.parent.is_dir():
        raise OutputError(f"{out}: directory {out.parent} does not exist")


def check_destination(original: ElfImage, out: Path) -> None:
    """OUT can be written without touching ORIGINAL."""
    check_output_file(out)
    same = out.resolve() == Path(original.path).resolve()
    if not same and out.exists():
        try:
            same = os.path.samefile(out, original.path)
        except OSError:
            same = False
    if same:
        raise OutputError(f"{out}: refusing to overwrite the input image")


def _mode_of(path: Path) -> int:
    """The input's permission bits, so an executable stays executable."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return 0o644


def write_atomically(out: Path, blob: bytes, mode: int = 0o644,
                     verify: Callable[[Path], None] | None = None) -> None:
    """Write BLOB to OUT through a temporary file in the same directory, fsynced and
    renamed, so OUT is either the old file or the whole new one; VERIFY sees the
    temporary file first."""
    try:
        fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"{out}: cannot create a file in {out.parent}: "
                          f"{exc.strerror or exc}") from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if verify is not None:
            verify(tmp)
        os.replace(tmp, out)
    except BaseException as exc:
        with held():  # a second Ctrl-C waits until the temporary file is gone
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"{out}: cannot write: {exc.strerror or exc}") from None
        raise
    _fsync_directory(out.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX leaves it in the directory's cache)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _verify(original: ElfImage, written_path: Path, blob: bytes, patches: dict[int, bytes],
            added: list[AddedSection], notes: bytes | None) -> ElfImage:
    """Read the written file back as any consumer would and check every request
    landed; the image read back is what CHECK sees (one more parse of a kernel with
    thousands of symbols costs seconds)."""
    try:
        written = load_elf(written_path)
        problem = _first_difference(original, written, blob, patches, added, notes)
    except ImageError as exc:
        problem = f"it does not load: {exc.message}"
    if problem:
        raise PatchError(f"{original.path}: the patched image failed verification: {problem}")
    return written


def _first_difference(original: ElfImage, written: ElfImage, blob: bytes,
                      patches: dict[int, bytes], added: list[AddedSection],
                      notes: bytes | None) -> str | None:
    if written.data != blob:
        return "the file on disk differs from the bytes written"
    if written.entry != original.entry:
        return "the entry point moved"
    loaded = {_placement(s) for s in written.segments}
    if any(_placement(s) not in loaded for s in original.segments):
        return "an original segment is missing"
    for sec in added:
        paddr = sec.physical(original)
        if (sec.vaddr, paddr, len(sec.data), sec.memsz, sec.flags) not in loaded:
            return f"no PT_LOAD segment for {sec.name}"
        if written.read_virtual(sec.vaddr, sec.memsz) != sec.data.ljust(sec.memsz, b"\0"):
            return f"the contents of {sec.name} differ"
    for vaddr, replacement in patches.items():
        if written.read_virtual(vaddr, len(replacement)) != replacement:
            return f"the patch at {vaddr:#x} did not land"
    if notes and not set(elf_format.iter_notes(notes)) <= {(n.name, n.type, n.desc)
                                                           for n in written.notes}:
        return "the notes are missing"
    if _multiboot_offset(original) != _multiboot_offset(written):
        return "the Multiboot header moved"
    return None


def _placement(seg: Segment) -> tuple[int, int, int, int, int]:
    return seg.vaddr, seg.paddr, seg.filesz, seg.memsz, seg.flags


def _multiboot_offset(image: ElfImage) -> int | None:
    try:
        header = find_header(image)
    except ImageError:
        return None
    return header.offset if header else None
