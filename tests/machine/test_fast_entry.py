"""`syscall` and `sysenter` on the bare PC (machine/fast_entry.py), and the returns
Unicorn runs itself (sysret, sysexit), each compared byte for byte with QEMU: the
x86_64 PC in long mode, in compatibility mode and before long mode, and the i386 PC
(where QEMU has no syscall at all)."""

import pytest

from tests.machine.harness import assert_same_as_qemu, run_native

KERNEL_CS, KERNEL_SS, USER_CS32, USER_CS64, USER_SS = 0x08, 0x10, 0x1B, 0x2B, 0x23
UD_MARK, GP_MARK = 0xBAD, 0xDEAD

# From ring 3: syscall/sysretq in 64-bit code, syscall/sysretl in compatibility mode,
# sysenter from compatibility mode and sysexit from compatibility-mode kernel code;
# the #UD and #GP an AMD CPU raises around them.
LONG_MODE = """    .include "macros64.inc"
    .text
    .globl test_main
# syscall/sysret round trips from ring 3 (64-bit and compatibility mode), sysenter
# from compatibility mode and sysexit back, and what each leaves in the registers.
    .set STAR_VALUE, (0x18 << 48) | (0x08 << 32)
syscall64_entry:               # LSTAR
    REC %rcx
    REC %r11
    REC_RFLAGS
    mov %cs, %rax
    REC %rax
    mov %ss, %rax
    REC %rax
    REC %rsp
    mov %rcx, %rbx
    movq $after_sysret64, %rcx
    or $0x1, %r11               # CF set in the user's RFLAGS after sysret
    sysretq
syscall32_entry:               # CSTAR
    REC %rcx
    REC %r11
    REC_RFLAGS
    mov %cs, %rax
    REC %rax
    movl $after_sysret32, %ecx
    sysretl
sysenter_entry:
    REC %rsp
    REC_RFLAGS
    mov %cs, %rax
    REC %rax
    mov %ss, %rax
    REC %rax
    movl $after_sysexit, %edx
    movl $user32_stack_top, %ecx
    ljmp *to_compat             # AMD: sysexit only outside 64-bit code
    .code32
kernel32:
    sysexit
    .code64
gp_handler:
    REC $0xdead
    REC 8(%rsp)
    REC 0(%rsp)
    jmp *resume
ud_handler:
    REC $0xbad
    REC 0(%rsp)
    jmp *resume

test_main:
    mov %rsp, saved_rsp
    SET_TSS tss
    SETGATE 6, ud_handler
    SETGATE 13, gp_handler
    # 1. syscall with EFER.SCE clear: #UD
    movq $1f, resume
    .globl ud_syscall
ud_syscall:
    syscall
1:  mov saved_rsp, %rsp
    mov $0xC0000080, %ecx
    rdmsr
    or $1, %eax
    wrmsr
    SETMSR 0xC0000081, STAR_VALUE
    SETMSR 0xC0000082, syscall64_entry
    SETMSR 0xC0000083, syscall32_entry
    SETMSR 0xC0000084, 0x4700     # FMASK: TF, IF, DF, NT... clear 0x4700
    SETMSR 0x174, 0x08
    SETMSR 0x175, 0x360000
    SETMSR 0x176, sysenter_entry
    # 2. sysenter and sysexit in 64-bit code: #UD on an AMD CPU
    movq $1f, resume
    sysenter
1:  mov saved_rsp, %rsp
    movq $1f, resume
    sysexitq
1:  mov saved_rsp, %rsp
    # 3. to ring 3 by sysretq: RIP = RCX, RFLAGS = R11
    movq $user64, %rcx
    mov $0x246, %r11
    mov $user_stack_top, %rsp
    sysretq
after_sysret64:                # ring 3, 64-bit
    REC_RFLAGS
    mov %cs, %rax
    REC %rax
    mov %ss, %rax
    REC %rax
    # 4. compatibility mode: far return to CS 0x1b
    pushq $0x1b
    pushq $user32
    lretq
after_sysret32:
    .code32
    pushfl
    popl %eax
    movl %eax, scratch
    mov %cs, %eax
    movl %eax, scratch + 8
    mov $0x360100, %ebp
    sysenter
after_sysexit:
    mov %esp, scratch + 16
    mov %cs, %eax
    mov %eax, scratch + 24
    # 5. sysexit from ring 3: #GP(0); then int $0x80 ends the user part
    movl $user_end, resume
    sysexit
    .code64
user_end:
    mov saved_rsp, %rsp
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    REC scratch
    REC scratch + 8
    REC scratch + 16
    REC scratch + 24
    mov $0x22, %eax
    ret
user64:
    mov $0x1234, %rsp
    mov $user_stack_top, %rsp
    stc
    std
    .globl user_syscall
user_syscall:
    syscall
user32:
    .code32
    mov $0x23, %eax
    mov %eax, %ds
    mov $user32_stack_top, %esp
    syscall
    .code64

    .data
    .align 16
saved_rsp: .quad 0
resume: .quad 0
scratch: .quad 0, 0, 0, 0
to_compat: .long kernel32
    .word 0x40
    .align 16
tss:
    .long 0
    .quad 0x370000            # RSP0
    .quad 0, 0, 0
    .quad 0, 0, 0, 0, 0, 0, 0
    .quad 0
    .word 0, 0x68
user_stack: .space 256
user_stack_top:
user32_stack: .space 256
user32_stack_top:
"""

# The x86_64 PC before long mode (an ELF32 kernel, runtime.s): syscall in legacy mode.
LEGACY_SYSCALL = """
    .include "macros.inc"
    .globl test_main, entry, the_syscall
entry:
    REC %ecx
    pushfl
    call record_pop
    mov %cs, %eax
    REC %eax
    mov %ss, %eax
    REC %eax
    jmp *%ecx
test_main:
    mov $0xC0000080, %ecx
    rdmsr
    or $1, %eax
    wrmsr
    mov $0xC0000081, %ecx
    mov $entry, %eax
    mov $0x00000008, %edx       # STAR[47:32]: CS 0x08, SS 0x10
    wrmsr
    stc
    sti
the_syscall:
    syscall
    cli
    REC $0x600d
    mov $3, %eax
    ret
"""

# The i386 PC: sysenter from ring 0 with IF set, then syscall (#UD: QEMU's i386 PC
# has no such instruction).
I386 = """
    .include "macros.inc"
    .globl test_main, entry, ud_handler, the_syscall
entry:
    REC %esp
    pushfl
    call record_pop
    mov %cs, %eax
    REC %eax
    mov %ss, %eax
    REC %eax
    mov saved_esp, %esp
    jmp after_sysenter
ud_handler:
    REC $0xbad
    REC (%esp)
    mov saved_esp, %esp
    jmp after_syscall
test_main:
    SETGATE IDT_BASE, 6, ud_handler
    mov %esp, saved_esp
    mov $0x174, %ecx
    mov $0x08, %eax
    xor %edx, %edx
    wrmsr
    inc %ecx
    mov $0x2ff000, %eax
    wrmsr
    inc %ecx
    mov $entry, %eax
    wrmsr
    sti
    sysenter
after_sysenter:
    cli
the_syscall:
    syscall
after_syscall:
    mov $4, %eax
    ret
    .data
saved_esp: .long 0
"""


@pytest.fixture(scope="module")
def long_mode(build64):
    return run_native(build64(LONG_MODE), bits=64)


def test_fast_calls_in_long_mode_print_what_qemu_prints(long_mode):
    assert_same_as_qemu(long_mode)
    assert long_mode.stop.code == 0x22


def test_syscall_without_efer_sce_and_64_bit_sysenter_and_sysexit_are_ud(long_mode):
    guest = long_mode.guest
    records = long_mode.records64()
    assert records[0:2] == [UD_MARK, guest["ud_syscall"]]
    assert records[2] == records[4] == UD_MARK


def test_syscall_saves_rip_and_rflags_and_enters_lstar_at_cpl_0(long_mode):
    guest = long_mode.guest
    rcx, r11, rflags, cs, ss, rsp = long_mode.records64()[6:12]
    assert rcx == guest["user_syscall"] + 2 and r11 == 0x647  # CF, DF, IF... as left
    assert rflags == 0x2  # FMASK's bits cleared, and (QEMU's TCG) the arithmetic ones
    assert (cs, ss, rsp) == (KERNEL_CS, KERNEL_SS, guest["user_stack_top"])


def test_sysretq_returns_to_rcx_in_ring_3_with_r11s_flags(long_mode):
    rflags, cs, ss = long_mode.records64()[12:15]
    assert (rflags, cs, ss) == (0x647, USER_CS64, USER_SS)


def test_compatibility_mode_syscall_enters_cstar_and_sysretl_returns(long_mode):
    guest = long_mode.guest
    records = long_mode.records64()
    assert records[15] == guest["user32"] + 14  # after 12 bytes and its 2-byte syscall
    assert records[17:19] == [0x2, KERNEL_CS]
    assert records[26:28] == [0x647, USER_CS32]


def test_sysenter_from_compatibility_mode_and_sysexit_back(long_mode):
    guest = long_mode.guest
    records = long_mode.records64()
    assert records[19:23] == [0x360000, 0x447, KERNEL_CS, KERNEL_SS]  # IF cleared
    assert records[23] == GP_MARK and records[25] == 0  # sysexit at CPL 3: #GP(0)
    assert records[28:30] == [guest["user32_stack_top"], USER_CS32]


def test_a_legacy_mode_syscall_on_the_x86_64_pc(build):
    run = run_native(build(LEGACY_SYSCALL), bits=64)
    assert_same_as_qemu(run)
    ecx, eflags, cs, ss, done = run.records()
    assert ecx == run.guest["the_syscall"] + 2 and eflags & 0x201 == 0x1  # IF off, CF on
    assert (cs, ss, done) == (KERNEL_CS, KERNEL_SS, 0x600D)


def test_sysenter_and_syscall_on_the_i386_pc(build):
    run = run_native(build(I386))
    assert_same_as_qemu(run)
    esp, eflags, cs, ss, ud, ud_ip = run.records()
    assert (esp, eflags & 0x200, cs, ss) == (0x2FF000, 0, KERNEL_CS, KERNEL_SS)
    assert (ud, ud_ip) == (UD_MARK, run.guest["the_syscall"])
