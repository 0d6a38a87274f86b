"""The least a Multiboot loader boots: a kernel that writes 0 to isa-debug-exit at
once. QEMU running it takes its own start-up and shut-down time and nothing else, so
`pvtool bench` can say how much of a QEMU run that is.

The image is one RX PT_LOAD at 1 MiB holding the Multiboot header (within the first
8 KiB of the file, 4-byte aligned: Multiboot 0.6.96, 3.1.1) and then the code. No
sections, no symbols.
"""

import struct

from pvtool.image import elf_format
from pvtool.image.elf_format import ELF32, Ehdr, Phdr
from pvtool.image.multiboot import HEADER_MAGIC, HEADER_MEMORY_INFO, HEADER_PAGE_ALIGN
from pvtool.machine.debugexit import DEBUG_EXIT_PORT
from pvtool.x86.isa import assemble
from pvtool.x86.paging import PAGE_SIZE

BASE = 0x100000
HEADER_FLAGS = HEADER_PAGE_ALIGN | HEADER_MEMORY_INFO  # what the bundled guests ask
MULTIBOOT_HEADER = struct.Struct("<3I")  # magic, flags, checksum
ENTRY = BASE + MULTIBOOT_HEADER.size
SEGMENT_OFFSET = PAGE_SIZE  # the loadable bytes start on a page of their own in the file

EXIT_AT_ONCE = f"""
    xor eax, eax
    out {DEBUG_EXIT_PORT:#x}, al
halt:
    cli
    hlt
    jmp halt
"""


def exit_kernel() -> bytes:
    """The ELF image of a Multiboot kernel whose first act is to exit with code 0."""
    checksum = -(HEADER_MAGIC + HEADER_FLAGS) & 0xFFFFFFFF
    segment = (MULTIBOOT_HEADER.pack(HEADER_MAGIC, HEADER_FLAGS, checksum)
               + assemble(EXIT_AT_ONCE, ENTRY, 32))
    header = ELF32.ehdr.pack(Ehdr(
        b"\x7fELF\x01\x01\x01".ljust(16, b"\0"), elf_format.ET_EXEC, elf_format.EM_386, 1,
        ENTRY, ELF32.ehdr.size, 0, 0, ELF32.ehdr.size, ELF32.phdr.size, 1, 0, 0, 0))
    load = ELF32.phdr.pack(Phdr(
        elf_format.PT_LOAD, SEGMENT_OFFSET, BASE, BASE, len(segment), len(segment),
        elf_format.PF_R | elf_format.PF_X, PAGE_SIZE))
    return (header + load).ljust(SEGMENT_OFFSET, b"\0") + segment
