"""A flat Multiboot binary: a kernel with no ELF headers (`nasm -f bin`, `ld --oformat
binary`) that says where it goes in its Multiboot header's address fields, the a.out
kludge (Multiboot 0.6.96, 3.1.3, flag 16).

QEMU 7.2's -kernel boots such a file (hw/i386/multiboot.c: a Multiboot header in the
first 8 KiB with flag 16 set is loaded by its address fields, whatever the file is);
pvtool's native and trap boots take it as QEMU does. A file with a header but without
flag 16 QEMU hands to its ELF loader, which refuses it; so does load_flat. A file with
no header at all is not a flat Multiboot binary (QEMU takes it for a Linux kernel), and
load_flat leaves it to the ELF loader's refusal. Neither QEMU nor pvtool checks the
entry point: a kernel entered outside its text runs whatever lies there.

The image has no address space of its own: its addresses are those the header loads
its text at, and that text, having no sections to say what is code, is all of it
treated as code (a linear sweep finds its hlt instructions).

Departures (measured with flat kernels on QEMU 7.2): RAM the image does not load reads
as zeros on pvtool, while on QEMU the firmware's leftovers lie there (a kernel with
bss_end_addr 0 read 0x61 in the word after its text at 1 MiB); a bss_end_addr past the
end of RAM, with which QEMU boots the kernel, is refused as any image past the end of
RAM is (machine/loader.py).
"""

from dataclasses import dataclass
from pathlib import Path

from pvtool.errors import ImageError
from pvtool.image.elf import read_image
from pvtool.image.elf_format import ELF32, ELF_MAGIC
from pvtool.image.multiboot import KludgeLoad, aout_kludge_load, header_in


@dataclass(frozen=True)
class FlatImage:
    path: Path
    data: bytes
    load: KludgeLoad

    @property
    def bits(self) -> int:
        """32: a Multiboot kernel is entered in 32-bit protected mode (3.2)."""
        return ELF32.bits

    def executable_regions(self) -> list[tuple[int, bytes]]:
        """The loaded text at its load address, as one region."""
        start = self.load.file_offset
        return [(self.load.load_addr, self.data[start:start + self.load.size])]

    def code_symbol(self, addr: int) -> None:
        """None: a flat binary has no symbols to name a crash site by."""
        return None

    def file_offset(self, addr: int) -> int | None:
        """Where ADDR's byte lives in the file, or None (not loaded from the file)."""
        if not self.load.holds(addr):
            return None
        return self.load.file_offset + addr - self.load.load_addr


def load_flat(path: Path) -> FlatImage | None:
    """The flat Multiboot binary at PATH, or None if the file is an ELF or has no
    Multiboot header (the ELF loader then says what it is)."""
    path = Path(path)
    data = read_image(path)
    if data.startswith(ELF_MAGIC):
        return None
    header = header_in(path, data)
    if header is None:
        return None
    if not header.aout_kludge:
        raise ImageError(
            f"{path}: not an ELF file, and its Multiboot header (at file offset "
            f"{header.offset:#x}) does not set flag 16, the a.out kludge, so nothing says "
            "where to load it")
    return FlatImage(path, data, aout_kludge_load(path, data, header))
