"""The 64-bit PC (qemu-system-x86_64's): an ELF64 Multiboot kernel starts in 32-bit
protected mode, enters long mode itself, and its interrupts and exceptions are
delivered through 16-byte gates, the 64-bit TSS's RSP0 and IST stacks, with CPL 3 ->
0 transitions (machine/delivery.py, machine/native.py). Every guest here prints what
it found and is compared byte for byte with qemu-system-x86_64; the assertions on
pvtool's own records say what the bytes mean."""

import pytest

from pvtool.machine.context import CS_INDEX
from pvtool.x86.paging import PF_U, PF_W
from tests.machine.harness import assert_same_as_qemu, boot_native, run_native
from tests.oracles import QEMU64, qemu_int_log

CODE64, DATA, USER_CODE64, USER_DATA = 0x08, 0x10, 0x2B, 0x23
EFER_LME_LMA = 0x500
CR4_PAE = 0x20

BOOT = """
    .include "macros64.inc"
    .text
    .globl test_main
test_main:
    mov %cr4, %rax
    REC %rax
    mov $0xC0000080, %ecx
    rdmsr
    REC %rax
    mov %cs, %rax
    REC %rax
    REC boot_eax
    mov $0x2a, %eax
    ret
"""

# Each handler records the stack pointer it runs on, then the frame the CPU pushed;
# the resume address says where to go next. Ring-3 steps set user_next and come back
# to it through back_to_user.
EXCEPTIONS = """    .include "macros64.inc"
    .text
    .globl test_main
# Each handler records the frame the CPU pushed (5 qwords, or 6 with an error code)
# and the stack pointer it ran on, then resumes where `resume` says.
handler_noerr:
    REC %rsp
    REC 0(%rsp)
    REC 8(%rsp)
    REC 16(%rsp)
    REC 24(%rsp)
    REC 32(%rsp)
    jmp *resume
handler_err:
    REC %rsp
    REC 0(%rsp)
    REC 8(%rsp)
    REC 16(%rsp)
    REC 24(%rsp)
    REC 32(%rsp)
    REC 40(%rsp)
    jmp *resume
handler_pf:
    mov %cr2, %rax
    REC %rax
    jmp handler_err

test_main:
    mov %rsp, saved_rsp
    SET_TSS tss
    SETGATE 0, handler_noerr
    SETGATE 3, handler_noerr, 0xEE, 1     # int3: DPL 3, IST 1
    SETGATE 13, handler_err
    SETGATE 14, handler_pf
    SETGATE 0x80, handler_noerr, 0xEE     # DPL 3
    SETGATE 0x81, handler_noerr, 0x8E, 2  # DPL 0, IST 2
    # 1. #DE in ring 0, on an odd stack: aligned to 16 first
    movq $1f, resume
    mov saved_rsp, %rsp
    sub $8, %rsp
    xor %ecx, %ecx
    .globl de_insn
de_insn:
    div %ecx
1:  # 2. #GP(0x2a08) from a selector past the GDT
    movq $1f, resume
    mov saved_rsp, %rsp
    mov $0x2a0b, %ax
    .globl gp_insn
gp_insn:
    mov %ax, %ds
1:  # 3. #PF on a read past the mapped GiB
    movq $1f, resume
    mov saved_rsp, %rsp
    .globl pf_insn
pf_insn:
    mov 0x40001234, %rax
1:  # 4. #PF on a write with a non-canonical... no: a write past the GiB
    movq $1f, resume
    mov saved_rsp, %rsp
    movq $7, 0x40005678
1:  # 5. int3 through IST 1
    movq $1f, resume
    mov saved_rsp, %rsp
    int3
1:  # 6. int $0x81 through IST 2, IF clear in the handler
    movq $1f, resume
    mov saved_rsp, %rsp
    sti
    int $0x81
1:  cli
    # 7. ring 3: int $0x80, then int3 (IST), then cli (#GP(0) from ring 3),
    #    then int $0x81 (DPL 0: #GP(0x80a)), then a #PF with U set
    movq $back_to_user, resume
    movq $user_code, user_next
back_to_user:
    mov saved_rsp, %rsp
    pushq $0x23
    pushq $user_stack_top - 8
    pushq $0x202
    pushq $0x2b
    pushq user_next
    iretq
user_done:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov saved_rsp, %rsp
    mov $0x11, %eax
    ret

user_code:
    movq $1f, user_next
    int $0x80
1:  movq $1f, user_next
    int3
1:  movq $1f, user_next
    cli
1:  movq $1f, user_next
    int $0x81
1:  movq $1f, user_next
    mov 0x40000000, %rax
1:  movq $1f, user_next
    hlt
1:  movq $user_done, resume
    int $0x80

    .data
    .align 16
saved_rsp: .quad 0
resume: .quad 0
user_next: .quad 0
    .align 16
tss:
    .long 0
    .quad 0x370000            # RSP0
    .quad 0, 0
    .quad 0
    .quad 0x360008            # IST1: not aligned, the CPU aligns it
    .quad 0x350000            # IST2
    .quad 0, 0, 0, 0, 0
    .quad 0
    .word 0, 0x68
    .space 64
user_stack: .space 256
user_stack_top:
"""

# Gates whose delivery faults: a handler in 32-bit code, an IST slot past the TSS's
# limit, a handler "segment" that is data.
BAD_GATES = """    .include "macros64.inc"
    .text
    .globl test_main
gp_handler:
    REC $0x0d
    REC 0(%rsp)
    jmp *resume
ts_handler:
    REC $0x0a
    REC 0(%rsp)
    jmp *resume
never:
    REC $0xbad
    jmp *resume
test_main:
    mov %rsp, saved_rsp
    SET_TSS tss
    SETGATE 13, gp_handler
    SETGATE 10, ts_handler
    SETGATE 0x40, never, 0x8E, 0, 0x40   # a 32-bit code segment: #GP(0x40)
    SETGATE 0x41, never, 0x8E, 2         # IST 2 lies past the TSS's limit: #TS(0x30)
    SETGATE 0x42, never, 0x8E, 0, 0x10   # a data segment: #GP(0x10)
    movq $1f, resume
    int $0x40
1:  mov saved_rsp, %rsp
    movw $0x2b, gdt_tss           # limit 0x2b: RSP0-2 and IST1 fit, IST2 does not
    movb $0x89, gdt_tss + 5       # available again, for ltr
    mov $0x30, %ax
    ltr %ax
    movq $1f, resume
    int $0x41
1:  mov saved_rsp, %rsp
    movq $1f, resume
    int $0x42
1:  mov saved_rsp, %rsp
    mov $0x12, %eax
    ret
    .data
saved_rsp: .quad 0
resume: .quad 0
    .align 16
tss:
    .long 0
    .quad 0x370000
    .quad 0, 0
    .quad 0
    .quad 0x360000, 0x350000
    .quad 0, 0, 0, 0, 0
    .quad 0
    .word 0, 0x68
"""


@pytest.fixture(scope="module")
def exceptions(build64):
    return run_native(build64(EXCEPTIONS), bits=64)


def test_an_elf64_kernel_enters_long_mode_from_the_multiboot_entry(build64):
    run = run_native(build64(BOOT), bits=64)
    cr4, efer, cs, magic = run.records64()
    assert (cr4, efer, cs, magic) == (CR4_PAE, EFER_LME_LMA, CODE64, 0x2BADB002)
    assert run.machine.cpu.long_mode and run.machine.cpu.segment(CS_INDEX).selector == CODE64
    assert_same_as_qemu(run)


def test_exceptions_in_long_mode_print_what_qemu_prints(exceptions):
    judge = assert_same_as_qemu(exceptions)
    assert judge.guest_code == 0x11


def test_ring_0_faults_push_an_aligned_five_qword_frame_and_their_error_codes(exceptions):
    guest = exceptions.guest
    records = exceptions.records64()
    # #DE from RSP = top - 8: the frame starts at the 16-byte aligned top - 16.
    assert records[:6] == [0x37FFC8, guest["de_insn"], CODE64, 0x46, 0x37FFF0, DATA]
    # #GP(0x2a08), a selector past the GDT.
    assert records[6:13] == [0x37FFC0, 0x2A08, guest["gp_insn"], CODE64, 0x46, 0x37FFF8, DATA]
    # #PF: CR2 first, then the not-present read's error code 0.
    assert records[13:15] == [0x40001234, 0x37FFC0] and records[15] == 0
    assert records[16] == guest["pf_insn"]
    assert records[21:24] == [0x40005678, 0x37FFC0, PF_W]


def test_ist_stacks_are_aligned_and_taken_even_without_a_ring_change(exceptions):
    records = exceptions.records64()
    int3, int81 = records[29:35], records[35:41]
    assert int3[0] == 0x360000 - 40  # IST1 0x360008 aligned down to 0x360000
    assert int3[5] == DATA
    assert int81[0] == 0x350000 - 40
    assert int81[3] & 0x200  # IF was set by sti: the frame keeps it
    assert int81[5] == 0  # QEMU loaded a null SS for the IST delivery of int3


def test_ring_3_events_switch_to_rsp0_and_push_the_user_stack(exceptions):
    guest = exceptions.guest
    records = exceptions.records64()
    user_frame = [USER_CODE64, 0x202, guest["user_stack_top"] - 8, USER_DATA]
    int80, int3 = records[41:47], records[47:53]
    assert int80[0] == 0x370000 - 40 and int80[2:] == user_frame
    assert int3[0] == 0x360000 - 40 and int3[2:] == user_frame  # IST over RSP0
    cli, int81, page_fault, hlt = records[53:60], records[60:67], records[67:75], records[75:82]
    assert cli[:2] == [0x370000 - 48, 0] and cli[3:] == user_frame
    assert int81[1] == 0x81 * 16 + 2  # past its gate's DPL 0: QEMU's error code
    assert page_fault[:3] == [0x40000000, 0x370000 - 48, PF_U]  # a user read, not present
    assert hlt[:2] == [0x370000 - 48, 0]


def test_trace_int_lines_are_qemus_for_long_mode(build64):
    """QEMU prints 16 hex digits for every address on the x86_64 PC."""
    run = boot_native(build64(EXCEPTIONS), bits=64)
    lines: list[str] = []
    run.machine.supervisor.delivery.trace = lines.append
    run.machine.run_slice(100_000)
    assert run.stop.code == 0x11 and len(lines) == 14
    assert lines == qemu_int_log(run.guest.elf, qemu=QEMU64)


def test_a_gate_that_cannot_be_delivered_raises_what_qemu_raises(build64):
    run = run_native(build64(BAD_GATES), bits=64)
    assert_same_as_qemu(run)
    assert run.records64() == [13, 0x40, 10, 0x30, 13, 0x10]  # #GP(sel), #TS(TR), #GP(sel)


IRETQ = """
    .text
    .globl test_main, after_iretq
test_main:
    mov %rsp, %rax
    pushq $0x10
    pushq %rax
    pushfq
    pushq $0x08
    pushq $after_iretq
    iretq
after_iretq:
    mov $0x7, %eax
    ret
"""


def test_the_iretq_that_ends_an_nmi_handler_is_seen(build64):
    """Watches.after_next_iret, which unblocks NMIs (machine/native.py), knows iretq
    (48 CF) as well as iretd."""
    run = boot_native(build64(IRETQ), bits=64)
    seen: list[int] = []
    run.machine.watches.after_next_iret(lambda: seen.append(run.machine.cpu.ip))
    run.machine.run_slice(100_000)
    assert seen == [run.guest["after_iretq"]]
