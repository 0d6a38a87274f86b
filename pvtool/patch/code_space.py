"""Which bytes of an image may be code: what discovery is given to decode, what it must
leave alone, and where it starts.

- Section headers, when the image has them, decide: the bytes of its SHF_EXECINSTR
  sections are the only candidates for code (a .rodata that ld put in an executable
  segment is data; an AX section in a writable segment, like Linux's .init.text, is
  code). Without section headers, the executable PT_LOAD segments are.
- Inside those bytes, some are data whatever decodes there: the Multiboot header (its
  checksum may hold 0xFA or 0xFB, `cli` and `sti`), ELF note sections, and in a 64-bit
  kernel the 32-bit Multiboot entry stub in a section of its own (_legacy_entry).
- The entry is the image's entry point. A kernel linked high and entered with paging off
  (Linux's vmlinux: entry 0x1000000, code at 0xc1000000) gives a physical address: it is
  translated through the segment that loads it.
"""

from dataclasses import dataclass

from pvtool.image import elf_format
from pvtool.image.elf import ElfImage, Section
from pvtool.image.multiboot import find_header


@dataclass(frozen=True)
class DataInCode:
    start: int
    end: int
    what: str  # "the Multiboot header", "ELF notes (.note.gnu.build-id)"


def code_regions(image: ElfImage) -> list[tuple[int, bytes]]:
    """(address, bytes) of every range that may hold code."""
    if not _loaded_sections(image):
        return image.executable_regions()
    return [(s.addr, image.read_virtual(s.addr, s.size))
            for s in _loaded_sections(image) if s.executable]


def rewritable_code(image: ElfImage) -> list[tuple[int, int]]:
    """[start, end) of the code regions a rewrite may change: all but the one a
    64-bit kernel's 32-bit Multiboot entry fills (_legacy_entry)."""
    legacy = {(d.start, d.end) for d in _legacy_entry(image, find_header(image))}
    return [(start, start + len(data)) for start, data in code_regions(image)
            if (start, start + len(data)) not in legacy]


def data_regions(image: ElfImage) -> list[tuple[int, bytes]]:
    """(address, bytes) of the mapped data: read for function pointers and jump tables."""
    if not _loaded_sections(image):
        return [(s.vaddr, image.read_virtual(s.vaddr, s.filesz))
                for s in image.segments if not s.executable and s.filesz]
    return [(s.addr, image.read_virtual(s.addr, s.size))
            for s in _loaded_sections(image) if not s.executable]


def data_in_code(image: ElfImage) -> list[DataInCode]:
    """Data that lies in an executable segment: the Multiboot header and the notes."""
    found = []
    header = find_header(image)
    if header is not None:
        address = _virtual_of_offset(image, header.offset)
        if address is not None:
            found.append(DataInCode(address, address + header.size, "the Multiboot header"))
    found += [DataInCode(s.addr, s.addr + s.size, f"ELF notes ({s.name})")
              for s in _loaded_sections(image) if s.type == "note"]
    found += _legacy_entry(image, header)
    found += [DataInCode(ph.vaddr, ph.vaddr + ph.filesz, "ELF notes (PT_NOTE)")
              for ph in _program_headers(image) if ph.type == elf_format.PT_NOTE]
    return found


def _legacy_entry(image: ElfImage, header) -> list[DataInCode]:
    """A 64-bit kernel's 32-bit Multiboot entry, kept out of the rewrite.

    QEMU and GRUB load an ELF64 kernel only through the Multiboot header's a.out
    kludge, whose entry_addr (a physical address) is a `.code32` stub that enables long
    mode and jumps to e_entry, the 64-bit entry (guests64's minikern64, like Linux's
    startup_32 before startup_64). Xen starts a PV kernel in long mode at its ENTRY
    note, which the patch set points at its PV entry, which jumps to e_entry: the stub
    never runs under PV. Decoded as 64-bit code it would be misread (its instructions
    mean other things without REX), so the executable section that holds it, when
    e_entry is in another one, is data to discovery, with this reason."""
    if image.bits != 64 or header is None or not header.aout_kludge:
        return []
    entry = entry_address(image)
    stub = _virtual_of_physical(image, header.entry_addr)
    for section in _loaded_sections(image):
        if section.executable and section.addr <= stub < section.addr + section.size \
                and not section.addr <= entry < section.addr + section.size:
            return [DataInCode(section.addr, section.addr + section.size,
                               f"the 32-bit Multiboot entry ({section.name}): not run "
                               "under PV, which starts the kernel in long mode")]
    return []


def _virtual_of_physical(image: ElfImage, paddr: int) -> int:
    for seg in image.segments:
        if seg.paddr <= paddr < seg.paddr + seg.memsz:
            return seg.vaddr + (paddr - seg.paddr)
    return paddr


def entry_address(image: ElfImage) -> int:
    """The entry point as the code's own (virtual) address."""
    entry = image.entry
    if any(s.contains(entry) for s in image.segments):
        return entry
    return _virtual_of_physical(image, entry)


def _loaded_sections(image: ElfImage) -> list[Section]:
    """Sections the loader puts in memory with bytes from the file."""
    return [s for s in image.sections
            if s.flags & elf_format.SHF_ALLOC and s.type != "nobits" and s.size
            and image.segment_at(s.addr) is not None]


def _program_headers(image: ElfImage) -> list[elf_format.Phdr]:
    """Every program header: ElfImage keeps only the PT_LOADs, and a PT_NOTE's bytes
    may sit in an executable one (Linux's .notes do)."""
    header, layout = image.elf_class.ehdr.unpack(image.data), image.elf_class.phdr
    return [layout.unpack(image.data, header.phoff + i * layout.size)
            for i in range(header.phnum)]


def _virtual_of_offset(image: ElfImage, offset: int) -> int | None:
    for seg in image.segments:
        if seg.offset <= offset < seg.offset + seg.filesz:
            return seg.vaddr + (offset - seg.offset)
    return None
