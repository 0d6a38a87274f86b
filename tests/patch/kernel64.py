"""A 64-bit kernel shaped like guests64's minikern64, for the patcher's tests: a 32-bit
Multiboot stub in a section of its own (the a.out kludge's entry), a 64-bit e_entry,
linked at KERNBASE + 1 MiB and loaded at 1 MiB, with one site of every catalogue class
a 64-bit kernel can hold, each behind a `site_CLASS` label, and the jump tables gcc
emits (absolute 8-byte entries; RIP-relative int32 offsets)."""

import json

from tests.binutils import build_once
from tests.cli import pvtool

KERNBASE = 0xFFFF_FFFF_8000_0000
LINK = KERNBASE + 0x10_0000
PAGE = 4096

KERNEL = r"""
.intel_syntax noprefix
.set KERNBASE, 0xffffffff80000000
.section .multiboot, "a"
.p2align 2
mb_header:
    .long 0x1BADB002, 0x00010003, -(0x1BADB002 + 0x00010003)
    .long mb_header - KERNBASE, mb_header - KERNBASE, edata - KERNBASE, end - KERNBASE
    .long boot32 - KERNBASE

.section .boot32, "ax"
.code32
.globl boot32
boot32:
    cli
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    lgdt [gdtr32 - KERNBASE]
    mov ecx, 0xc0000080
    rdmsr
    wrmsr
    hlt

.text
.code64
.globl start64
.type start64, @function
start64:
site_cli:           cli
                    mov rsp, offset stack_top
site_mov_from_cr3:  mov rax, cr3
site_mov_to_cr3:    mov cr3, rax
site_mov_from_cr2:  mov rbx, cr2
                    nop
site_mov_to_cr2:    mov cr2, rbx
                    nop
site_mov_from_cr0:  mov rcx, cr0
site_mov_to_cr0:    mov cr0, rcx
site_mov_from_cr4:  mov rdx, cr4
site_mov_to_cr4:    mov cr4, rdx
site_mov_from_cr8:  mov r9, cr8
site_mov_to_cr8:    mov cr8, r9
                    mov ecx, 0xc0000082
site_wrmsr:         wrmsr
site_rdmsr:         rdmsr
site_lgdt:          lgdt [rip + gdtr]
site_lidt:          lidt [rip + idtr]
site_sgdt:          sgdt [rip + scratch]
site_sidt:          sidt [rip + scratch]
                    mov ax, 0x28
site_ltr:           ltr ax
                    xor eax, eax
site_lldt:          lldt ax
site_str:           str eax
site_sldt:          sldt ecx
site_smsw:          smsw edx
site_invlpg:        invlpg [rdi]
site_clts:          clts
site_lmsw:          lmsw ax
site_wbinvd:        wbinvd
site_invd:          invd
site_pushf:         pushfq
site_popf:          popfq
site_sti:           sti
                    nop
site_hlt:           hlt
                    call helper
site_swapgs:        swapgs
                    nop
site_iret:          iretq
.size start64, . - start64

.globl helper
.type helper, @function
helper:
site_mov_from_sreg: mov ax, cs
                    mov rdx, qword ptr [rip + scratch]
site_rdfsbase:      rdfsbase rax
site_rdgsbase:      rdgsbase rcx
site_wrfsbase:      wrfsbase rax
site_wrgsbase:      wrgsbase rcx
site_mov_to_ss:     mov ss, ax
site_in:            in al, dx
site_out:           out dx, al
site_ins:           rep insb
site_outs:          rep outsb
site_lar:           lar eax, ecx
site_lsl:           lsl eax, ecx
site_verr:          verr ax
site_verw:          verw ax
site_xsetbv:        xsetbv
site_invpcid:       invpcid rax, [rcx]
site_mov_to_dr:     mov dr7, rax
site_mov_from_dr:   mov rax, dr6
    lea rdx, [rip + rel_table]
    movsxd rax, dword ptr [rdx + rdi*4]
    add rax, rdx
    jmp rax
case0:
    swapgs
site_sysret:        sysretq
case1:
    jmp qword ptr [abs_table + rdi*8]
case2:
    swapgs
site_sysexit:       sysexitq
case3:
    mov rax, rdi
    add rax, 1
site_retfq:         retfq
    ret
.size helper, . - helper

.section .rodata
.p2align 3
rel_table:
    .long case0 - rel_table, case1 - rel_table
abs_table:
    .quad case2, case3
gdtr32:
    .word 0
    .long 0

.data
.p2align 4
gdtr: .word 0
    .quad 0
.p2align 4
idtr: .word 0
    .quad 0
scratch: .quad 0, 0
edata:
.bss
.p2align 12
stack: .skip 4096
stack_top:
end:
"""

SCRIPT = """
ENTRY(start64)
SECTIONS {
  . = 0xffffffff80100000;
  .multiboot : AT(ADDR(.multiboot) - 0xffffffff80000000) { *(.multiboot) }
  .boot32 : AT(ADDR(.boot32) - 0xffffffff80000000) { *(.boot32) }
  .text : AT(ADDR(.text) - 0xffffffff80000000) { *(.text) }
  .rodata : AT(ADDR(.rodata) - 0xffffffff80000000) { *(.rodata) }
  .data : AT(ADDR(.data) - 0xffffffff80000000) { *(.data) }
  .bss : AT(ADDR(.bss) - 0xffffffff80000000) { *(.bss) }
}
"""



def build_kernel64(tmp_path_factory):
    return build_once(tmp_path_factory.getbasetemp() / "kernel64", KERNEL, name="k64",
                      bits=64, script=SCRIPT,
                      flags=("-nostdlib", "--build-id=none", "-z", "noexecstack",
                             "-z", "max-page-size=0x1000"))


def patch_kernel64(kernel, tmp_path_factory):
    """KERNEL patched through the CLI with the default patch set: the output's path and
    its JSON report."""
    out = tmp_path_factory.mktemp("patched64") / "k64.pv.elf"
    result = pvtool("patch", kernel.elf, "-o", out)
    assert result.status == 0, result.stderr
    return out, json.loads(out.with_suffix(".json").read_text())
