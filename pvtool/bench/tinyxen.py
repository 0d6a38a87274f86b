"""A tiny Xen PV kernel built in memory: N null hypercalls (xen_version) through
`int 0x82` between two rdtsc reads, a nanobench line with the cycles they took
(console_io), then SCHEDOP_shutdown(poweroff). It is the null-hypercall benchmark's
guest; its line is in the units of nanobench's (bench/operations.py), so a PV
operation can be priced in null hypercalls.

The image is the least a domain builder accepts: one RWX PT_LOAD at 1 MiB holding
code, data and a hypercall page, and a PT_NOTE with the notes of a 32-bit non-PAE
Xen 3.0 kernel (public/elfnote.h). No sections, no symbols.
"""

import struct

from pvtool.abi.xen import (
    HYPERCALL_VECTOR_32,
    XEN_NOTE_NAME,
    ConsoleIO,
    ElfNote,
    Hypercall,
    SchedOp,
    ShutdownReason,
    XenVer,
)
from pvtool.bench.operations import line_head
from pvtool.image import elf_format
from pvtool.image.elf_format import ELF32, Ehdr, ElfClass, Phdr
from pvtool.x86.isa import assemble
from pvtool.x86.paging import PAGE_SIZE

BASE = 0x100000
DATA = BASE + PAGE_SIZE
COUNTER = DATA  # the loop counter
REASON = DATA + 4  # the shutdown reason
START = DATA + 8  # the first rdtsc, 64 bits
DELTA = DATA + 16  # the cycles, 64 bits, divided down to digits
HEAD = DATA + 32  # "nanobench: null_hypercall n=N cycles="
DIGITS_END = DATA + PAGE_SIZE - 1  # the digits end here, before the newline
HYPERCALL_PAGE = BASE + 2 * PAGE_SIZE
IMAGE_SIZE = 3 * PAGE_SIZE
SEGMENT_OFFSET = PAGE_SIZE  # the loadable bytes start on a page of their own in the file
OPERATION = "null_hypercall"

TIMED_CALLS = f"""
    rdtsc
    mov dword ptr [{START:#x}], eax
    mov dword ptr [{START + 4:#x}], edx
    mov dword ptr [{COUNTER:#x}], {{calls}}
again:
    mov eax, {Hypercall.xen_version}
    mov ebx, {XenVer.version}
    xor ecx, ecx
    int {HYPERCALL_VECTOR_32:#x}
    dec dword ptr [{COUNTER:#x}]
    jnz again
    rdtsc
    sub eax, dword ptr [{START:#x}]
    sbb edx, dword ptr [{START + 4:#x}]
    mov dword ptr [{DELTA:#x}], eax
    mov dword ptr [{DELTA + 4:#x}], edx
"""

# The 64-bit count at DELTA in decimal, ending at DIGITS_END; EDI is its first digit.
# Long division by 10, high word then low word (the remainder carries over in EDX);
# 0x30 is ASCII '0'.
DECIMAL = f"""
    mov edi, {DIGITS_END:#x}
    mov ecx, 10
digit:
    xor edx, edx
    mov eax, dword ptr [{DELTA + 4:#x}]
    div ecx
    mov dword ptr [{DELTA + 4:#x}], eax
    mov eax, dword ptr [{DELTA:#x}]
    div ecx
    mov dword ptr [{DELTA:#x}], eax
    add dl, 0x30
    dec edi
    mov byte ptr [edi], dl
    or eax, dword ptr [{DELTA + 4:#x}]
    jnz digit
"""

REPORT = f"""
    mov eax, {Hypercall.console_io}
    mov ebx, {ConsoleIO.write}
    mov ecx, {{head_size}}
    mov edx, {HEAD:#x}
    int {HYPERCALL_VECTOR_32:#x}
    mov eax, {Hypercall.console_io}
    mov ebx, {ConsoleIO.write}
    mov ecx, {DIGITS_END + 1:#x}
    sub ecx, edi
    mov edx, edi
    int {HYPERCALL_VECTOR_32:#x}
    mov dword ptr [{REASON:#x}], {ShutdownReason.poweroff}
    mov eax, {Hypercall.sched_op}
    mov ebx, {SchedOp.shutdown}
    mov ecx, {REASON:#x}
    int {HYPERCALL_VECTOR_32:#x}
hang:
    jmp hang
"""


def null_hypercall_kernel(calls: int) -> bytes:
    """The ELF image of a kernel making CALLS xen_version hypercalls, then powering off."""
    check_calls(calls)
    head = line_head(OPERATION, calls)
    text = TIMED_CALLS.format(calls=calls) + DECIMAL + REPORT.format(head_size=len(head))
    return kernel_image(ELF32, BASE, 0, assemble(text, BASE, 32), head, pae_mode=b"no")


def check_calls(calls: int) -> None:
    if not 0 < calls < 1 << 31:
        raise ValueError(f"calls must be positive and fit a signed 32-bit counter: {calls}")


def kernel_image(elf: ElfClass, base: int, virt_base: int, code: bytes, head: bytes,
                 pae_mode: bytes) -> bytes:
    """The ELF image of a tiny kernel of class ELF linked at BASE (VIRT_BASE + its
    physical address): CODE on its first page, the data page holding HEAD and the
    line's newline (the layout above, from BASE), the hypercall page, and the notes."""
    data = bytearray(PAGE_SIZE)
    data[HEAD - DATA:HEAD - DATA + len(head)] = head
    data[DIGITS_END - DATA] = ord("\n")
    segment = (code.ljust(PAGE_SIZE, b"\0") + data).ljust(IMAGE_SIZE, b"\0")
    notes = _notes(elf, base, virt_base, pae_mode)
    headers = elf.ehdr.size + 2 * elf.phdr.size
    assert headers <= SEGMENT_OFFSET
    notes_offset = SEGMENT_OFFSET + len(segment)
    ident = bytes((0x7F, *b"ELF", elf.ident, 1, 1)).ljust(16, b"\0")
    header = elf.ehdr.pack(Ehdr(
        ident, elf_format.ET_EXEC, elf.machine, 1, base, elf.ehdr.size, 0, 0,
        elf.ehdr.size, elf.phdr.size, 2, 0, 0, 0))
    load = elf.phdr.pack(Phdr(
        elf_format.PT_LOAD, SEGMENT_OFFSET, base, base - virt_base, len(segment),
        len(segment), elf_format.PF_R | elf_format.PF_W | elf_format.PF_X, PAGE_SIZE))
    note = elf.phdr.pack(Phdr(elf_format.PT_NOTE, notes_offset, 0, 0, len(notes),
                              len(notes), elf_format.PF_R, elf_format.NOTE_ALIGN))
    return (header + load + note).ljust(SEGMENT_OFFSET, b"\0") + segment + notes


def _notes(elf: ElfClass, base: int, virt_base: int, pae_mode: bytes) -> bytes:
    """A Xen kernel's notes, its addresses in words of the class's width."""
    word = struct.Struct("<Q" if elf.bits == 64 else "<I").pack
    hypercall_page = base + (HYPERCALL_PAGE - BASE)
    notes = ((ElfNote.guest_os, b"pvtool-bench\0"), (ElfNote.xen_version, b"xen-3.0\0"),
             (ElfNote.virt_base, word(virt_base)), (ElfNote.entry, word(base)),
             (ElfNote.hypercall_page, word(hypercall_page)),
             (ElfNote.pae_mode, pae_mode + b"\0"), (ElfNote.loader, b"generic\0"))
    return b"".join(elf_format.pack_note(XEN_NOTE_NAME, kind, desc) for kind, desc in notes)
