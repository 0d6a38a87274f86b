"""The symbol table a kernel asks for with XEN_ELFNOTE_BSD_SYMTAB "yes": Xen's domain
builder loads it after the kernel's last byte, as libelf's elf_load_bsdsyms does
(xen/common/libelf/libelf-loader.c), so a NetBSD-style kernel finds its own symbols
at its end without reading its file:

    +0     u32 size: from the ELF header to the end of the string table
    +4     the kernel's ELF header, rewritten: no program headers, 3 section headers
           at e_shoff 64 (the header's slot is sizeof(Elf64_Ehdr) in both classes)
    +68    section headers: 0 null, 1 the symbol table (sh_link 2), 2 its strings
    +260   (rounded up to the class's word) the symbol table, then its strings, each
           rounded up; sh_offset of both counts from the ELF header at +4

Offsets 4 + 64 + 3 * 64 = 260 are libelf's `struct elf_sym_header`, packed with room
for either class. The unused bytes of the header's slot and section header 0 are zeros
here, as the ELF specification wants them; libelf leaves them as its stack held them.
Its size estimate (elf_parse_bsdsyms) counts the whole header since the fix for 32-bit
kernels whose string table was lost past a page boundary, which this follows.
"""

from pvtool.errors import ImageError
from pvtool.image.elf import ElfImage
from pvtool.image.elf_format import SHT_STRTAB, SHT_SYMTAB, ElfClass, Shdr

SIZE_FIELD = 4  # the u32 before the ELF header
HEADER_SLOT = 64  # sizeof(Elf64_Ehdr): libelf's elf_ehdr union
SECTION_SLOT = 64  # sizeof(Elf64_Shdr)
SECTIONS = 3  # ELF_BSDSYM_SECTIONS: null, symtab, strtab
SYMTAB_INDEX, STRTAB_INDEX = 1, 2
HEADER_SIZE = SIZE_FIELD + HEADER_SLOT + SECTIONS * SECTION_SLOT  # 260
EV_CURRENT = 1


def symtab_block(image: ElfImage) -> bytes | None:
    """The bytes libelf loads at the kernel's end (rounded up to its word), or None
    when the image has no symbol table whose sh_link names a string table (libelf
    then loads nothing)."""
    elf_class = image.elf_class
    shdrs = _section_headers(image)
    symtab = next((s for s in shdrs if s.type == SHT_SYMTAB), None)
    if symtab is None or not 0 < symtab.link < len(shdrs) \
            or shdrs[symtab.link].type != SHT_STRTAB:
        return None
    strtab = shdrs[symtab.link]
    word = elf_class.word_size
    symtab_at = _round_up(HEADER_SIZE, word)
    strtab_at = _round_up(symtab_at + symtab.size, word)
    end = _round_up(strtab_at + strtab.size, word)
    block = bytearray(end)
    ehdr_at = SIZE_FIELD
    block[0:4] = (strtab_at + strtab.size - ehdr_at).to_bytes(4, "little")
    block[ehdr_at:ehdr_at + elf_class.ehdr.size] = _header(image)
    sections = (symtab._replace(offset=symtab_at - ehdr_at, link=STRTAB_INDEX),
                strtab._replace(offset=strtab_at - ehdr_at))
    for index, shdr in enumerate(sections, start=SYMTAB_INDEX):
        at = ehdr_at + HEADER_SLOT + index * elf_class.shdr.size
        block[at:at + elf_class.shdr.size] = elf_class.shdr.pack(shdr)
    block[symtab_at:symtab_at + symtab.size] = _contents(image, symtab)
    block[strtab_at:strtab_at + strtab.size] = _contents(image, strtab)
    return bytes(block)


def _section_headers(image: ElfImage) -> list[Shdr]:
    elf_class: ElfClass = image.elf_class
    ehdr = elf_class.ehdr.unpack(image.data)
    return [elf_class.shdr.unpack(image.data, ehdr.shoff + i * ehdr.shentsize)
            for i in range(ehdr.shnum)]


def _header(image: ElfImage) -> bytes:
    """The kernel's ELF header as elf_load_bsdsyms rewrites it."""
    elf_class = image.elf_class
    ehdr = elf_class.ehdr.unpack(image.data)
    return elf_class.ehdr.pack(ehdr._replace(
        version=EV_CURRENT, phoff=0, shoff=HEADER_SLOT, ehsize=elf_class.ehdr.size,
        phentsize=0, phnum=0, shentsize=elf_class.shdr.size, shnum=SECTIONS, shstrndx=0))


def _contents(image: ElfImage, shdr: Shdr) -> bytes:
    if shdr.offset + shdr.size > len(image.data):
        raise ImageError(f"{image.path}: its symbol table reaches past the end of the file "
                         f"({shdr.offset + shdr.size:#x} > {len(image.data):#x})")
    return image.data[shdr.offset:shdr.offset + shdr.size]


def _round_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment
