"""Small kernels written for Xen itself, the harness of the hypervisor tests.

Each guest is GNU assembly (Intel syntax, `as --32`), linked at 1 MiB with
`ld -m elf_i386`, and carries the "Xen" ELF notes a 32-bit non-PAE Xen 3.0 kernel
carries (ENTRY, HYPERCALL_PAGE, VIRT_BASE 0, PAE_MODE "no", XEN_VERSION, GUEST_OS,
LOADER). It calls the hypervisor only through its hypercall page and reports what it
saw by storing it in its own memory or by writing it with console_io.

The hypercall numbers, structure offsets and selectors below are typed from
shared/XEN-ABI.md on purpose, not imported from pvtool.abi: a wrong number there must
fail these tests, not be shared by the guest and the hypervisor.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

from tests.binutils import KERNEL_FLAGS, Binary, build_once

KERNEL_BASE = 0x100000
PAGE = 4096

# XEN-ABI.md, "Hypercall numbers" and friends.
XEN_ABI = r"""
    .intel_syntax noprefix
    .set HC_set_trap_table, 0
    .set HC_mmu_update, 1
    .set HC_set_gdt, 2
    .set HC_stack_switch, 3
    .set HC_set_callbacks, 4
    .set HC_sched_op_compat, 6
    .set HC_set_debugreg, 8
    .set HC_get_debugreg, 9
    .set HC_update_descriptor, 10
    .set HC_multicall, 13
    .set HC_update_va_mapping, 14
    .set HC_xen_version, 17
    .set HC_console_io, 18
    .set HC_vm_assist, 21
    .set HC_iret, 23
    .set HC_mmuext_op, 26
    .set HC_sched_op, 29
    .set HC_physdev_op, 33
    .set SCHEDOP_yield, 0
    .set SCHEDOP_shutdown, 2
    .set SHUTDOWN_poweroff, 0
    .set SHUTDOWN_crash, 3
    .set CONSOLEIO_write, 0
    .set MMUEXT_NEW_BASEPTR, 5
    .set MMUEXT_INVLPG_LOCAL, 7
    .set UVMF_NONE, 0
    .set UVMF_INVLPG, 2
    .set DOMID_SELF, 0x7ff0
    .set FLAT_RING1_CS, 0xe019
    .set FLAT_RING1_DS, 0xe021
    .set SI_shared_info, 36
    .set SI_pt_base, 60
    .set VCPU_upcall_mask, 1
    .set VCPU_cr2, 8

    /* One trap_info entry: vector, flags (DPL | 4 to mask events), ring-1 CS, handler. */
    .macro TRAP vector, flags, handler
    .byte \vector, \flags
    .word FLAT_RING1_CS
    .long \handler
    .endm

    .macro HYPERCALL name
    call hypercall_page + HC_\name * 32
    .endm

    /* mmuext_op(OPS, COUNT, no done count, DOMID_SELF); EAX holds the result. */
    .macro MMUEXT_OP ops, count=1
    mov ebx, offset \ops
    mov ecx, \count
    xor edx, edx
    mov esi, DOMID_SELF
    HYPERCALL mmuext_op
    .endm

    /* jmp (not call) to the iret entry: it pushes EAX itself (XEN-ABI.md). */
    .macro HYPERVISOR_IRET
    jmp hypercall_page + HC_iret * 32
    .endm

    .macro SHUTDOWN reason
    mov dword ptr [shutdown_reason], \reason
    mov ebx, SCHEDOP_shutdown
    mov ecx, offset shutdown_reason
    HYPERCALL sched_op
    .endm

    /* Map the shared_info page at VA (a page of .bss) as Xen guests do:
       update_va_mapping(va, start_info.shared_info | P|RW|A|D, 0, UVMF_INVLPG). */
    .macro MAP_SHARED_INFO va
    mov eax, [start_info_ptr]
    mov ecx, [eax + SI_shared_info]
    or ecx, 0x63
    mov ebx, offset \va
    xor edx, edx
    mov esi, UVMF_INVLPG
    HYPERCALL update_va_mapping
    .endm
"""

TEMPLATE = r"""
{abi}
    .text
    .globl _start
_start:
    mov [start_info_ptr], esi
    mov [entry_esp], esp
    mov esp, offset stack_top
{text}
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
start_info_ptr: .long 0
entry_esp:      .long 0
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

# One ELF note named "Xen" (Linux's ELFNOTE(Xen, type, desc)).
NOTE = """    .balign 4
    .long 2f - 1f
    .long 4f - 3f
    .long {type}
1:  .asciz "Xen"
2:  .balign 4
3:  {desc}
4:  .balign 4
"""

# A stale translation, for the TLB tests: the guest reads the first page of `frames`
# (two pages of its own) so that its translation is cached, reports phase 1 and waits
# for `go` while the test remaps that page onto the second behind the TLB's back
# (harness.Booted.remap_behind_the_tlb), then reads it again into `stale`. The test's
# guest code follows: a flush, and the value it then reads into `after`.
STALE_TRANSLATION = r"""
    mov dword ptr [frames], 0xaaaa0000
    mov dword ptr [frames + 4096], 0xbbbb1111
    mov eax, [frames]
    mov [before], eax
    mov dword ptr [phase], 1
wait_for_test:
    cmp dword ptr [go], 0
    je wait_for_test
    mov eax, [frames]
    mov [stale], eax
"""
STALE_TRANSLATION_DATA = """
phase: .long 0
go: .long 0
before: .long 0
stale: .long 0
after: .long 0
"""

# The notes a 32-bit non-PAE Xen 3.0 kernel carries (XEN-ABI.md, "Boot"): type, value.
DEFAULT_NOTES = (
    (6, '.asciz "pvtool-test"'),  # GUEST_OS
    (5, '.asciz "xen-3.0"'),  # XEN_VERSION
    (3, ".long 0"),  # VIRT_BASE
    (1, ".long {entry}"),  # ENTRY
    (2, ".long hypercall_page"),  # HYPERCALL_PAGE
    (9, '.asciz "no"'),  # PAE_MODE
    (8, '.asciz "generic"'),  # LOADER
)

# The same notes for a PAE kernel, as today's 32-bit Xen kernels carry them.
PAE_NOTES = tuple((t, '.asciz "yes"') if t == 9 else (t, d) for t, d in DEFAULT_NOTES)

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


class Guest(Binary):
    """A test guest: its ELF (`elf`, or `path`) and its symbols."""

    virt_base = 0  # where its symbols' virtual addresses start (VIRT_BASE)

    @property
    def path(self) -> Path:
        return self.elf


def guest_source(text: str = "", *, handlers: str = "", data: str = "", bss: str = "",
                 notes: tuple[tuple[int, str], ...] = DEFAULT_NOTES,
                 entry: str = "_start", abi: str = XEN_ABI, template: str = TEMPLATE) -> str:
    """A guest's assembly: TEMPLATE (this module's, or xenguest64's) filled in."""
    note_text = "".join(NOTE.format(type=t, desc=d.format(entry=entry)) for t, d in notes)
    return template.format(abi=abi, text=text, handlers=handlers, data=data, bss=bss,
                           notes=note_text)


def link(workdir: Path, source: str, *, e_entry: str = "_start",
         base: int = KERNEL_BASE) -> Guest:
    """Assemble and link SOURCE (once per session); return the ELF and its symbols."""
    built = build_once(workdir, source, flags=KERNEL_FLAGS,
                       script=LINKER_SCRIPT.format(e_entry=e_entry, base=base))
    return Guest(built.elf, built.symbols)


def u32s(data: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(data) // 4}I", data)


GuestBuilder = Callable[..., Guest]


class HC:
    """Hypercall numbers (XEN-ABI.md, "Hypercall numbers")."""

    set_trap_table = 0
    mmu_update = 1
    set_gdt = 2
    stack_switch = 3
    sched_op_compat = 6
    set_debugreg = 8
    get_debugreg = 9
    update_descriptor = 10
    memory_op = 12
    multicall = 13
    update_va_mapping = 14
    xen_version = 17
    console_io = 18
    vm_assist = 21
    iret = 23
    mmuext_op = 26
    sched_op = 29
    event_channel_op = 32
    physdev_op = 33


# -errno as the guest sees it in EAX (XEN-ABI.md, "Calling convention").
EFAULT, EINVAL, ENOSYS = 14, 22, 38
DOMID_SELF = 0x7FF0
FLAT_RING1_CS, FLAT_RING1_DS = 0xE019, 0xE021


def neg(errno: int) -> int:
    """-errno as a 32-bit register value."""
    return -errno & 0xFFFFFFFF


def trap_site_note(*sites: tuple[str, bytes]) -> str:
    """Assembly for a "pvtool" note (type 1, trap_sites: u32 address, u32 count) and its
    table of 24-byte entries (address, length, original bytes at 8), as pvtool patch
    records an instruction left as an int3 (docs/ABI.md, "ELF notes named pvtool")."""
    entries = "".join(
        f"    .long {label}\n    .byte {len(original)}\n    .fill 3, 1, 0\n"
        f"    .byte {', '.join(str(b) for b in original)}\n"
        f"    .fill {16 - len(original)}, 1, 0\n"
        for label, original in sites)
    return f"""
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 7, 8, 1
    .asciz "pvtool"
    .balign 4
    .long trap_site_table, {len(sites)}
    .popsection
    .pushsection .data
trap_site_table:
{entries}
    .popsection
"""
