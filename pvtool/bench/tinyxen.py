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
from pvtool.image.elf_format import ELF32, Ehdr, Phdr
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
HEADERS = ELF32.ehdr.size + 2 * ELF32.phdr.size
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
    if not 0 < calls < 1 << 31:
        raise ValueError(f"calls must be positive and fit a signed 32-bit counter: {calls}")
    head = line_head(OPERATION, calls)
    text = TIMED_CALLS.format(calls=calls) + DECIMAL + REPORT.format(head_size=len(head))
    code = assemble(text, BASE, 32)
    data = bytearray(PAGE_SIZE)
    data[HEAD - DATA:HEAD - DATA + len(head)] = head
    data[DIGITS_END - DATA] = ord("\n")
    segment = (code.ljust(PAGE_SIZE, b"\0") + data).ljust(IMAGE_SIZE, b"\0")
    notes = _notes()
    notes_offset = SEGMENT_OFFSET + len(segment)
    header = ELF32.ehdr.pack(Ehdr(
        b"\x7fELF\x01\x01\x01".ljust(16, b"\0"), elf_format.ET_EXEC, elf_format.EM_386, 1,
        BASE, ELF32.ehdr.size, 0, 0, ELF32.ehdr.size, ELF32.phdr.size, 2, 0, 0, 0))
    load = ELF32.phdr.pack(Phdr(
        elf_format.PT_LOAD, SEGMENT_OFFSET, BASE, BASE, len(segment), len(segment),
        elf_format.PF_R | elf_format.PF_W | elf_format.PF_X, PAGE_SIZE))
    note = ELF32.phdr.pack(Phdr(elf_format.PT_NOTE, notes_offset, 0, 0, len(notes),
                                len(notes), elf_format.PF_R, elf_format.NOTE_ALIGN))
    return (header + load + note).ljust(SEGMENT_OFFSET, b"\0") + segment + notes


def _notes() -> bytes:
    word = struct.Struct("<I").pack
    notes = ((ElfNote.guest_os, b"pvtool-bench\0"), (ElfNote.xen_version, b"xen-3.0\0"),
             (ElfNote.virt_base, word(0)), (ElfNote.entry, word(BASE)),
             (ElfNote.hypercall_page, word(HYPERCALL_PAGE)), (ElfNote.pae_mode, b"no\0"),
             (ElfNote.loader, b"generic\0"))
    return b"".join(elf_format.pack_note(XEN_NOTE_NAME, kind, desc) for kind, desc in notes)
