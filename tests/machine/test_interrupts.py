"""Interrupt and exception delivery through the guest's IDT (machine/delivery.py under
machine/native.py's rules), by small real guests booted on the native machine and, for
every one, on QEMU too: the records each guest prints (frames, error codes, CR2,
EFLAGS) must be QEMU's bytes.

The expected values come from the Intel SDM (vol. 3, chapter 6) and the guests' own
symbols: a fault pushes the faulting instruction's address, `int n` the next one.
"""

import pytest

from pvtool.machine.stop import StopKind
from tests.machine.harness import assert_same_as_qemu, run_native

STACK_TOP = 0x380000
CALL_FRAME = 4  # test_main's return address sits on the stack when a scenario runs
IF = 1 << 9
SELECTOR_CODE0 = 0x08
GP, NP, DF, PF, UD = 13, 11, 8, 14, 6
INTGATE, TRAPGATE = 0x8E, 0x8F

HEADER = """
    .include "macros.inc"
    .globl test_main
"""

# A handler that records the frame of a vector without an error code and returns.
FRAME_RECORDER = """
on_vector:
    REC %esp
    REC 0(%esp)                 # EIP
    REC 4(%esp)                 # CS
    REC 8(%esp)                 # EFLAGS
    REC_EFLAGS                  # EFLAGS inside the handler
    iret
"""


def _gate_scenario(insn: str, vector: int, attr: int) -> str:
    return HEADER + f"""
test_main:
    SETGATE IDT_BASE, {vector}, on_vector, {attr:#x}
    mov $0x7fffffff, %eax
    add $1, %eax                # OF set, for into
    sti
    REC_EFLAGS
    .globl the_int, after_int
the_int:
    {insn}
after_int:
    REC_EFLAGS
    xor %eax, %eax
    ret
""" + FRAME_RECORDER


@pytest.mark.parametrize("insn, vector", [("int3", 3), ("int $3", 3), ("into", 4),
                                          ("int $0x40", 0x40)])
@pytest.mark.parametrize("attr", [INTGATE, TRAPGATE], ids=["interrupt-gate", "trap-gate"])
def test_software_interrupt_pushes_next_eip_cs_eflags_and_only_interrupt_gates_clear_if(
        build, insn, vector, attr):
    guest = build(_gate_scenario(insn, vector, attr))
    run = run_native(guest)

    before, esp, eip, cs, eflags, inside, after = run.records()
    assert before & IF
    assert esp == STACK_TOP - CALL_FRAME - 12
    assert eip == guest["after_int"]
    assert cs == SELECTOR_CODE0
    assert eflags == before
    assert inside == (before & ~IF if attr == INTGATE else before)
    assert after == before  # iret restored IF
    assert run.machine.exits["interrupt"] == 1
    assert run.machine.exits["exception"] == 0
    assert_same_as_qemu(run)


def test_gp_pushes_the_selector_error_code_and_the_faulting_eip(build):
    # Loading DS with a selector past the GDT limit: #GP(selector & ~3), EIP on the
    # instruction; the handler steps over it (mov %ax,%ds is 2 bytes). Three in a row:
    # each arrives as #GP, none as #DF (the ack that Unicorn needs, UNICORN.md).
    guest = build(HEADER + """
test_main:
    SETGATE IDT_BASE, 13, on_gp
    mov $0x0ffb, %ax
    .globl load1, load2, load3
load1: mov %ax, %ds
    mov $0x1234, %ax
load2: mov %ax, %es
load3: mov %ax, %fs
    mov $5, %eax
    ret
on_gp:
    REC 0(%esp)                 # error code
    REC 4(%esp)                 # EIP
    REC 8(%esp)                 # CS
    addl $2, 4(%esp)
    add $4, %esp
    iret
""")
    run = run_native(guest)

    assert run.stop.code == 5
    assert run.records() == [0x0FF8, guest["load1"], SELECTOR_CODE0,
                             0x1234, guest["load2"], SELECTOR_CODE0,
                             0x1234, guest["load3"], SELECTOR_CODE0]
    assert run.machine.exits["exception"] == 3
    assert_same_as_qemu(run)


PAGING_SCENARIO = HEADER + """
    .set HOLE, 0x340000
    .set READ_ONLY, 0x341000
    .set HOLE2, 0x342000
test_main:
    SETGATE IDT_BASE, 14, on_pf
    call paging_on
    UNMAP HOLE
    UNMAP HOLE2
    andl $~2, PAGE_TABLE + (READ_ONLY >> 12) * 4   # present, read-only
    invlpg READ_ONLY
    mov $HOLE + 0x10, %ebx
    .globl read_hole, write_hole, write_read_only
read_hole:
    mov (%ebx), %eax            # not present: the handler maps the page, the read retries
    REC %eax
    mov $HOLE2 + 0x800, %ebx
    movl $0x5a5a, %ecx
write_hole:
    mov %ecx, (%ebx)
    mov $READ_ONLY + 4, %ebx
write_read_only:
    mov %ecx, (%ebx)            # present, read-only, CR0.WP set: a protection fault
    REC HOLE2 + 0x800
    REC READ_ONLY + 4
    xor %eax, %eax
    ret
on_pf:
    REC 0(%esp)                 # error code
    REC 4(%esp)                 # EIP
    push %eax
    push %ebx
    mov %cr2, %eax
    REC %eax
    mov %eax, %ebx              # map the page present and writable, then retry
    shr $12, %ebx
    and $~0xfff, %eax
    or $3, %eax
    mov %eax, PAGE_TABLE(,%ebx,4)
    mov %cr2, %eax
    invlpg (%eax)
    pop %ebx
    pop %eax
    add $4, %esp
    iret
"""


def test_pf_pushes_the_error_code_and_sets_cr2_and_the_instruction_retries(build):
    guest = build(PAGING_SCENARIO)
    run = run_native(guest)

    hole, read_only, hole2 = 0x340000, 0x341000, 0x342000
    records = run.records()
    # error code (SDM 4.7): bit 0 present, bit 1 write; EIP on the instruction.
    assert records[0:3] == [0, guest["read_hole"], hole + 0x10]
    assert records[3] == 0  # the retried read sees the (zeroed) page
    assert records[4:7] == [2, guest["write_hole"], hole2 + 0x800]
    assert records[7:10] == [3, guest["write_read_only"], read_only + 4]
    assert records[10:] == [0x5A5A, 0x5A5A]
    assert run.machine.exits["exception"] == 3
    assert_same_as_qemu(run)


def test_not_present_gate_raises_np_with_the_int_instruction_as_return_address(build):
    # SDM 6.12.1.1: #NP(vector*8 + 2: IDT bit set). The software interrupt did not
    # complete, so the #NP frame points at it: 2 bytes back for int n, 1 for int3.
    guest = build(HEADER + """
test_main:
    SETGATE IDT_BASE, 11, on_np
    SETGATE IDT_BASE, 0x41, nowhere, 0x0E   # P = 0
    SETGATE IDT_BASE, 3, nowhere, 0x0E
    SETGATE IDT_BASE, 4, nowhere, 0x0E
    mov $0x7fffffff, %eax
    add $1, %eax                # OF set, for into
    .globl int41, int3_insn, int_3, into_insn
int41:
    int $0x41
int3_insn:
    int3
int_3:
    int $3
into_insn:
    into
    xor %eax, %eax
    ret
nowhere:
    mov $1, %eax
    jmp finish
on_np:
    REC 0(%esp)
    REC 4(%esp)
    mov 4(%esp), %eax           # step over: 2 bytes for int n, 1 for int3 and into
    cmpb $0xcd, (%eax)
    jne 1f
    incl 4(%esp)
1:  incl 4(%esp)
    add $4, %esp
    iret
""")
    run = run_native(guest)

    assert run.stop.code == 0
    assert run.records() == [0x41 * 8 + 2, guest["int41"], 3 * 8 + 2, guest["int3_insn"],
                             3 * 8 + 2, guest["int_3"], 4 * 8 + 2, guest["into_insn"]]
    assert_same_as_qemu(run)


@pytest.mark.parametrize("limit, raises", [(0x40 * 8 + 7, False), (0x40 * 8 + 6, True)],
                         ids=["limit-covers-gate", "limit-one-byte-short"])
def test_idt_limit_must_cover_the_whole_gate(build, limit, raises):
    guest = build(HEADER + f"""
test_main:
    SETGATE IDT_BASE, 13, on_gp
    SETGATE IDT_BASE, 0x40, on_40
    lidt short_idt
    .globl int40
int40:
    int $0x40
    xor %eax, %eax
    ret
on_40:
    REC $0x40
    iret
on_gp:
    REC 0(%esp)
    REC 4(%esp)
    mov $2, %eax
    jmp finish
    .data
    .align 4
    .word 0
short_idt:
    .word {limit:#x}
    .long IDT_BASE
""")
    run = run_native(guest)

    if raises:
        assert run.stop.code == 2
        assert run.records() == [0x40 * 8 + 2, guest["int40"]]
    else:
        assert run.stop.code == 0
        assert run.records() == [0x40]
    assert_same_as_qemu(run)


def test_a_code_segment_descriptor_in_the_idt_is_not_a_gate(build):
    # Type 0xE with S = 1 is an execute-only code segment, not an interrupt gate:
    # #GP(vector*8 + 2), as QEMU checks the 5-bit type.
    guest = build(HEADER + """
test_main:
    SETGATE IDT_BASE, 13, on_gp
    SETGATE IDT_BASE, 0x40, wrong, 0x9E
    .globl int40
int40:
    int $0x40
    xor %eax, %eax
    ret
wrong:
    mov $1, %eax
    jmp finish
on_gp:
    REC 0(%esp)
    REC 4(%esp)
    mov $2, %eax
    jmp finish
""")
    run = run_native(guest)

    assert run.stop.code == 2
    assert run.records() == [0x40 * 8 + 2, guest["int40"]]
    assert_same_as_qemu(run)


def test_ud2_is_delivered_as_ud_without_error_code(build):
    guest = build(HEADER + """
test_main:
    SETGATE IDT_BASE, 6, on_ud
    .globl the_ud2
the_ud2:
    ud2
    xor %eax, %eax
    ret
on_ud:
    REC %esp
    REC 0(%esp)
    REC 4(%esp)
    addl $2, 0(%esp)
    iret
""")
    run = run_native(guest)

    assert run.stop.code == 0
    assert run.records() == [STACK_TOP - CALL_FRAME - 12, guest["the_ud2"], SELECTOR_CODE0]
    assert_same_as_qemu(run)


# ---- double and triple faults (SDM table 6-5)

BAD_LOAD = """
    .globl bad_load
    mov $0x0ffb, %ax
bad_load:
    mov %ax, %ds
"""

DF_RECORDER = """
on_df:
    REC 0(%esp)                 # error code: always 0
    REC 4(%esp)                 # EIP: the instruction that faulted first
    push %eax
    mov %cr2, %eax
    REC %eax
    pop %eax
    mov $8, %eax
    jmp finish
"""


def test_contributory_fault_while_delivering_a_contributory_one_is_a_double_fault(build):
    # #GP, and its gate is not present: #NP while delivering #GP -> #DF.
    guest = build(HEADER + """
test_main:
    SETGATE IDT_BASE, 8, on_df
    SETGATE IDT_BASE, 13, on_df, 0x0E
""" + BAD_LOAD + """
    xor %eax, %eax
    ret
""" + DF_RECORDER)
    run = run_native(guest)

    assert run.stop.code == 8
    assert run.records()[:2] == [0, guest["bad_load"]]
    assert_same_as_qemu(run)


def test_page_fault_while_delivering_a_page_fault_is_a_double_fault(build):
    # The first #PF is a data access to an unmapped page; reading gate 14 faults too,
    # because the IDT straddles a page boundary (gates 0-13 mapped, 14 on up not).
    guest = build(HEADER + """
    .set IDT2, 0x320000 - 0x70
test_main:
    SETGATE IDT2, 8, on_df
    call paging_on
    UNMAP 0x320000
    UNMAP 0x340000
    lidt idt2_desc
    .globl bad_read
bad_read:
    mov 0x340000, %eax
    xor %eax, %eax
    ret
    .data
    .align 4
    .word 0
idt2_desc:
    .word 0x7ff
    .long IDT2
    .text
""" + DF_RECORDER)
    run = run_native(guest)

    assert run.stop.code == 8
    # CR2 holds the second fault's address: gate 14's, 0x320000.
    assert run.records() == [0, guest["bad_read"], 0x320000]
    assert_same_as_qemu(run)


def test_page_fault_while_delivering_gp_is_delivered_serially_with_cr2(build):
    # #GP, then reading gate 13 faults (its page is unmapped): a contributory fault
    # followed by #PF is not a double fault (SDM table 6-5); the #PF is delivered, CR2
    # holding gate 13's address.
    guest = build(HEADER + """
    .set IDT2, 0x320000 - 0x70  # gates 0-13 in an unmapped page, 14 on up mapped
test_main:
    SETGATE IDT2, 14, on_pf
    call paging_on
    UNMAP 0x31f000
    lidt idt2_desc
""" + BAD_LOAD + """
    xor %eax, %eax
    ret
on_pf:
    REC 0(%esp)
    REC 4(%esp)
    mov %cr2, %eax
    REC %eax
    mov $14, %eax
    jmp finish
    .data
    .align 4
    .word 0
idt2_desc:
    .word 0x7ff
    .long IDT2
""")
    run = run_native(guest)

    assert run.stop.code == 14
    assert run.records() == [0, guest["bad_load"], 0x320000 - 0x70 + 13 * 8]
    assert_same_as_qemu(run)


def test_page_fault_reading_a_software_interrupts_gate_sets_cr2(build):
    guest = build(HEADER + """
    .set IDT2, 0x320000 - 0x100  # gates 0-31 mapped, 0x40 in the next, unmapped page
test_main:
    SETGATE IDT2, 14, on_pf
    call paging_on
    UNMAP 0x320000
    lidt idt2_desc
    .globl int40
int40:
    int $0x40
    xor %eax, %eax
    ret
on_pf:
    REC 0(%esp)
    REC 4(%esp)
    mov %cr2, %eax
    REC %eax
    mov $14, %eax
    jmp finish
    .data
    .align 4
    .word 0
idt2_desc:
    .word 0x7ff
    .long IDT2
""")
    run = run_native(guest)

    assert run.stop.code == 14
    assert run.records() == [0, guest["int40"], 0x320000 - 0x100 + 0x40 * 8]
    assert_same_as_qemu(run)


def test_fault_pushing_onto_an_unmapped_stack_ends_in_a_triple_fault(build):
    # int3 cannot push its frame (#PF), nor can the #PF (-> #DF), nor the #DF: the PC
    # shuts down. pvtool stops with the instruction that started it.
    guest = build(HEADER + """
test_main:
    SETGATE IDT_BASE, 3, nowhere
    SETGATE IDT_BASE, 14, nowhere
    SETGATE IDT_BASE, 8, nowhere
    call paging_on
    mov $'T', %al
    call putc
    UNMAP 0x350000
    mov $0x351000, %esp         # the first push lands in the unmapped page
    .globl the_int3
the_int3:
    int3
    xor %eax, %eax
    jmp finish
nowhere:
    mov $1, %eax
    jmp finish
""")
    run = run_native(guest)

    assert run.stop.kind is StopKind.TRIPLE_FAULT
    assert run.stop.ip == guest["the_int3"]
    assert run.output == b"T"
    assert run.records() == []
    assert_same_as_qemu(run)


def test_fault_delivering_a_double_fault_is_a_triple_fault(build):
    # #GP with gate 13 not present -> #NP -> #DF, whose gate is not present either.
    guest = build(HEADER + """
test_main:
    SETGATE IDT_BASE, 13, nowhere, 0x0E
    SETGATE IDT_BASE, 11, nowhere, 0x0E
    SETGATE IDT_BASE, 8, nowhere, 0x0E
""" + BAD_LOAD + """
    xor %eax, %eax
    ret
nowhere:
    mov $1, %eax
    jmp finish
""")
    run = run_native(guest)

    assert run.stop.kind is StopKind.TRIPLE_FAULT
    assert run.stop.ip == guest["bad_load"]
    assert_same_as_qemu(run)


# ---- from ring 3: the gate's DPL and the stack switch through the TSS

RING3_SCENARIO = HEADER + """
    .set RING0_STACK, 0x360000
    .set USER_STACK, 0x370000
test_main:
    SETGATE IDT_BASE, 13, on_gp
    SETGATE IDT_BASE, 0x40, on_user_int             # DPL 0: not for ring 3
    SETGATE IDT_BASE, 0x41, on_user_int, 0xEE       # DPL 3
    TO_RING3 tss, RING0_STACK, user_code, USER_STACK
user_code:
    mov $0x33, %ax
    mov %ax, %ds
    mov %ax, %es
    .globl allowed_int, denied_int
allowed_int:
    int $0x41
denied_int:
    int $0x40
    jmp .
on_user_int:
    REC %esp
    REC 0(%esp)
    REC 4(%esp)
    REC 8(%esp)
    REC 12(%esp)
    REC 16(%esp)
    iret
on_gp:
    REC %esp
    REC 0(%esp)
    REC 4(%esp)
    REC 8(%esp)
    REC 12(%esp)
    REC 16(%esp)
    REC 20(%esp)
    mov $3, %eax
    jmp finish
    .data
    .align 4
tss: .space 104
"""


@pytest.mark.parametrize("bits", [32, 64])
def test_from_ring3_gates_switch_to_the_tss_stack_and_a_dpl0_gate_raises_gp(build, bits):
    """The same on the x86_64 PC (BITS 64) in protected mode, before any long mode:
    a 64-bit CPU's ring change loads the caches itself (machine/native.py)."""
    guest = build(RING3_SCENARIO)
    run = run_native(guest, bits=bits)

    ring0_stack, user_stack, user_cs, user_ss = 0x360000, 0x370000, 0x2B, 0x33
    records = run.records()
    # int $0x41 (DPL 3): on ESP0, frame EIP CS EFLAGS ESP SS of ring 3.
    assert records[:6] == [ring0_stack - 20, guest["denied_int"], user_cs, 0x202,
                           user_stack, user_ss]
    # int $0x40 (DPL 0 < CPL 3): #GP(0x40*8 + 2) with the int as return address.
    assert records[6:] == [ring0_stack - 24, 0x40 * 8 + 2, guest["denied_int"], user_cs,
                           0x202, user_stack, user_ss]
    assert run.stop.code == 3
    assert_same_as_qemu(run)
