"""Small 64-bit kernels written for Xen itself, the harness of the 64-bit hypervisor
tests (tests/hv/xenguest.py is the 32-bit one).

Each guest is GNU assembly (Intel syntax, `as --64`), linked with `ld -m elf_x86_64` in
the higher half as Linux links its kernel (VIRT_BASE 0xffffffff80000000, the kernel
1 MiB above it), and carries the "Xen" ELF notes a 64-bit Linux carries
(arch/x86/xen/xen-head.S: 8-byte ENTRY, HYPERCALL_PAGE and VIRT_BASE, PAE_MODE "yes",
XEN_VERSION, GUEST_OS, LOADER). It starts at CPL 3 in kernel mode, RSI = start_info,
and reports what it saw by storing it in its own memory; it ends by setting `done`
and asking the hypervisor to power off (through its hypercall page: `syscall`).

The numbers, offsets and selectors below are typed from shared/XEN-ABI64.md and
XEN-ABI.md on purpose, not imported from pvtool.abi: a wrong number there must fail
these tests, not be shared by the guest and the hypervisor.
"""

from __future__ import annotations

import struct
from pathlib import Path

from tests.binutils import KERNEL_FLAGS, build_once
from tests.hv.xenguest import NOTE, Guest

VIRT_BASE = 0xFFFF_FFFF_8000_0000
KERNEL_BASE = VIRT_BASE + 0x100000
PAGE = 4096
FLAGS = (*KERNEL_FLAGS, "-z", "max-page-size=4096")

# XEN-ABI.md "Hypercall numbers", XEN-ABI64.md 1.2 (the hypercall page), 1.8, and
# start_info's 64-bit offsets (XEN-ABI.md "Structures", in brackets).
XEN_ABI64 = r"""
    .intel_syntax noprefix
    .set HC_mmu_update, 1
    .set HC_update_va_mapping, 14
    .set HC_console_io, 18
    .set HC_mmuext_op, 26
    .set HC_sched_op, 29
    .set SCHEDOP_shutdown, 2
    .set SHUTDOWN_poweroff, 0
    .set MMUEXT_PIN_L4_TABLE, 3
    .set MMUEXT_UNPIN_TABLE, 4
    .set MMUEXT_NEW_BASEPTR, 5
    .set MMUEXT_NEW_USER_BASEPTR, 15
    .set UVMF_INVLPG, 2
    .set DOMID_SELF, 0x7ff0
    .set FLAT_KERNEL_CS64, 0xe033
    .set FLAT_KERNEL_SS64, 0xe02b
    .set SI_nr_pages, 32
    .set SI_shared_info, 40
    .set SI_pt_base, 88
    .set SI_nr_pt_frames, 96
    .set SI_mfn_list, 104

    .macro HYPERCALL name
    call hypercall_page + HC_\name * 32
    .endm

    .macro SHUTDOWN reason
    mov dword ptr [rip + shutdown_reason], \reason
    mov edi, SCHEDOP_shutdown
    lea rsi, [rip + shutdown_reason]
    HYPERCALL sched_op
    .endm
"""

TEMPLATE = r"""
{abi}
    .text
    .globl _start
_start:
    mov [rip + start_info_ptr], rsi
    mov [rip + entry_rsp], rsp
    lea rsp, [rip + stack_top]
{text}
    mov dword ptr [rip + done], 1
    SHUTDOWN SHUTDOWN_poweroff
fell_through:
    jmp fell_through

{handlers}

    .balign 4096
    .globl hypercall_page
hypercall_page:
    .skip 4096

    .section .note.Xen, "a", @note
{notes}

    .data
    .balign 4096
start_info_ptr: .quad 0
entry_rsp:      .quad 0
done:           .long 0
shutdown_reason: .long 0
{data}

    .bss
    .balign 4096
{bss}
    .balign 4096
stack:
    .skip 8192
stack_top:
"""

# The notes a 64-bit Linux carries (XEN-ABI64.md 1.8): type, value.
DEFAULT_NOTES = (
    (6, '.asciz "pvtool-test"'),  # GUEST_OS
    (5, '.asciz "xen-3.0"'),  # XEN_VERSION
    (3, f".quad {VIRT_BASE:#x}"),  # VIRT_BASE
    (1, ".quad {entry}"),  # ENTRY
    (2, ".quad hypercall_page"),  # HYPERCALL_PAGE
    (9, '.asciz "yes"'),  # PAE_MODE
    (8, '.asciz "generic"'),  # LOADER
)

LINKER_SCRIPT = """
ENTRY({e_entry})
SECTIONS {{
    . = {base:#x};
    .text : {{ *(.text) }}
    .note.Xen : {{ *(.note.Xen) }}
    .data ALIGN(4096) : {{ *(.data) }}
    .bss ALIGN(4096) : {{ *(.bss) *(COMMON) }}
}}
"""


class Guest64(Guest):
    """A 64-bit test guest: its symbols are virtual addresses VIRT_BASE up."""

    virt_base = VIRT_BASE


def guest_source(text: str = "", *, handlers: str = "", data: str = "", bss: str = "",
                 notes: tuple[tuple[int, str], ...] = DEFAULT_NOTES,
                 entry: str = "_start") -> str:
    note_text = "".join(NOTE.format(type=t, desc=d.format(entry=entry)) for t, d in notes)
    return TEMPLATE.format(abi=XEN_ABI64, text=text, handlers=handlers, data=data, bss=bss,
                           notes=note_text)


def link(workdir: Path, source: str, *, e_entry: str = "_start",
         base: int = KERNEL_BASE) -> Guest64:
    """Assemble and link SOURCE (once per session); return the ELF and its symbols."""
    built = build_once(workdir, source, bits=64, flags=FLAGS,
                       script=LINKER_SCRIPT.format(e_entry=e_entry, base=base))
    return Guest64(built.elf, built.symbols)


def u64s(data: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(data) // 8}Q", data)


# Page-table entry bits (Intel SDM Vol. 3A, 4.5) and Xen's (XEN-ABI64.md 1.8).
P, RW, US, A, D, PS, G = 1, 2, 4, 0x20, 0x40, 0x80, 0x100
NX = 1 << 63
GUEST_KERNEL = 1 << 52  # _PAGE_GUEST_KERNEL: flag bit 12 in PTE bit 52
ADDRESS = 0x000F_FFFF_FFFF_F000
XEN_SLOTS = range(256, 272)
M2P_START = 0xFFFF_8000_0000_0000
PERDOMAIN_START = 0xFFFF_8200_0000_0000  # slot 260
# -errno as the guest sees it in RAX.
EPERM, EFAULT, EINVAL, ENOSYS = 1, 14, 22, 38


def neg(errno: int) -> int:
    """-errno as a 64-bit register value."""
    return -errno & 0xFFFF_FFFF_FFFF_FFFF
