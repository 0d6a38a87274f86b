"""Task switches through IDT task gates (machine/taskswitch.py under machine/native.py's
rules), by small guests booted on the native machine and on QEMU: what the new task
finds (TR, back link, NT, busy bits, the error code on its stack, the old task's saved
state) and the faults a bad switch raises must be QEMU's.

Expected values come from the Intel SDM (Vol. 3A, 7.3 and table 7-1: a fault on the
new TSS has the TSS selector as its error code) and the guests' own symbols.
"""

import pytest

from pvtool.machine.stop import StopKind
from tests.machine.harness import assert_same_as_qemu, run_native

MAIN_TSS, TASK_TSS = 0x38, 0x40
USER_CS, USER_SS = 0x2B, 0x33
USER_STACK, TASK_STACK = 0x368000, 0x360000
TSS_AVAILABLE, TSS_BUSY = 0x89, 0x8B  # access bytes: present, DPL 0, 32-bit TSS
NT, TS = 1 << 14, 1 << 3
TS_VECTOR, NP_VECTOR, GP_VECTOR = 10, 11, 13

# The runtime's GDT copied into a larger one, with the main task's TSS at 0x38 (loaded
# with ltr) and the task the gates name at 0x40, a ring-0 task starting at on_task.
TASKS = r"""
    .include "macros.inc"
    .globl test_main, on_task, after_int, bad_load, main_tss, task_tss
    .set TASK_STACK, 0x360000
    .set RING0_STACK, 0x370000

.macro TSSDESC slot, tss, access=0x89, limit=103
    mov $\tss, %eax
    movw $\limit, task_gdt + \slot
    movw %ax, task_gdt + \slot + 2
    shr $16, %eax
    movb %al, task_gdt + \slot + 4
    movb $\access, task_gdt + \slot + 5
    movb $0, task_gdt + \slot + 6
    movb %ah, task_gdt + \slot + 7
.endm

.macro TASKGATE vec, sel, attr=0x85
    movl $(\sel << 16), IDT_BASE + \vec * 8
    movl $(\attr << 8), IDT_BASE + \vec * 8 + 4
.endm

setup_tasks:
    mov $gdt, %esi
    mov $task_gdt, %edi
    mov $14, %ecx
    rep movsl
    TSSDESC 0x38, main_tss
    lgdt task_gdt_desc
    movl $RING0_STACK, main_tss + 4
    movl $0x10, main_tss + 8
    mov $0x38, %ax
    ltr %ax
    movl $on_task, task_tss + 0x20
    movl $0x2, task_tss + 0x24
    movl $TASK_STACK, task_tss + 0x38
    movl $0x08, task_tss + 0x4c
    movl $0x10, task_tss + 0x50
    movl $0x10, task_tss + 0x54
    movl $0x10, task_tss + 0x48
    ret

# The new task: what it finds, then the run ends from inside it.
on_task:
    str %eax
    REC %eax
    REC task_tss                # back link
    REC_EFLAGS                  # NT
    mov %cr0, %eax
    and $8, %eax
    REC %eax                    # CR0.TS
    movzbl task_gdt + 0x3d, %eax
    REC %eax                    # the old task's access byte: still busy
    movzbl task_gdt + 0x45, %eax
    REC %eax                    # the new task's: busy
    REC %esp
    REC 0(%esp)                 # the error code, when the vector has one
    REC main_tss + 0x20         # the old task's EIP, CS, ESP
    REC main_tss + 0x4c
    REC main_tss + 0x38
    xor %eax, %eax
    jmp finish

# A fault of the switch itself, through an ordinary gate.
on_fault:
    REC 0(%esp)                 # error code
    REC 4(%esp)                 # EIP
    xor %eax, %eax
    jmp finish

    .data
    .align 8
task_gdt:
    .fill 10, 8, 0
task_gdt_end:
    .align 4
    .word 0
task_gdt_desc:
    .word task_gdt_end - task_gdt - 1
    .long task_gdt
    .align 4
main_tss:
    .fill 104, 1, 0
task_tss:
    .fill 104, 1, 0
    .text
"""


@pytest.mark.parametrize("bits", [32, 64])
def test_int_from_ring_3_through_a_task_gate_enters_a_ring_0_task(build, bits):
    """On both PCs: the x86_64 PC's CPU, before long mode, switches tasks too (its
    segment caches loaded whole, machine/taskswitch.py)."""
    guest = build(TASKS + """
test_main:
    call setup_tasks
    TSSDESC 0x40, task_tss
    TASKGATE 0x41, 0x40, 0xE5      # DPL 3: ring 3 may raise it
    pushl $0x33
    pushl $0x368000
    pushl $0x2
    pushl $0x2b
    pushl $user_code
    iret
user_code:
    int $0x41
after_int:
    jmp after_int
""")
    run = run_native(guest, bits=bits)

    assert run.records() == [
        TASK_TSS, MAIN_TSS, 0x2 | NT, TS, TSS_BUSY, TSS_BUSY,
        TASK_STACK, 0,  # no error code: the stack is the TSS's, untouched
        guest["after_int"], USER_CS, USER_STACK]
    assert_same_as_qemu(run)


def test_a_fault_through_a_task_gate_pushes_its_error_code_on_the_new_stack(build):
    guest = build(TASKS + """
test_main:
    call setup_tasks
    TSSDESC 0x40, task_tss
    TASKGATE 13, 0x40
    mov $0x1234, %ax
bad_load:
    mov %ax, %ds
    jmp bad_load
""")
    run = run_native(guest)

    records = run.records()
    assert records[:8] == [TASK_TSS, MAIN_TSS, 0x2 | NT, TS, TSS_BUSY, TSS_BUSY,
                           TASK_STACK - 4, 0x1234]
    assert records[8:10] == [guest["bad_load"], 0x08]  # the faulting instruction
    assert_same_as_qemu(run)


@pytest.mark.parametrize(("access", "limit", "selector", "vector"), [
    (0x09, 103, TASK_TSS, NP_VECTOR),  # not present
    (TSS_BUSY, 103, TASK_TSS, GP_VECTOR),  # already busy
    (TSS_AVAILABLE, 0x2B, TASK_TSS, TS_VECTOR),  # too small for a 32-bit TSS
    (TSS_AVAILABLE, 103, TASK_TSS | 4, TS_VECTOR),  # the gate names an LDT selector
], ids=["not-present", "busy", "too-small", "ldt-selector"])
def test_a_bad_tss_faults_with_its_selector_as_the_error_code(build, access, limit,
                                                             selector, vector):
    guest = build(TASKS + f"""
test_main:
    call setup_tasks
    TSSDESC 0x40, task_tss, {access:#x}, {limit:#x}
    TASKGATE 0x41, {selector:#x}
    SETGATE IDT_BASE, {vector}, on_fault
    .globl the_int
the_int:
    int $0x41
    ret
""")
    run = run_native(guest)

    # A refused `int n` did not complete: the fault reports the instruction.
    assert run.records() == [selector & ~3, guest["the_int"]]
    assert_same_as_qemu(run)


def test_a_task_outside_ring_0_is_a_departure_that_stops_the_run(build):
    # The CPU would enter a ring-3 task; pvtool can raise a running CPU only to ring 0
    # from a hook (taskswitch.py, Departures), and says so rather than run it wrongly.
    guest = build(TASKS + """
test_main:
    call setup_tasks
    TSSDESC 0x40, task_tss
    movl $0x2b, task_tss + 0x4c
    TASKGATE 0x41, 0x40
    .globl the_int
the_int:
    int $0x41
    ret
""")
    run = run_native(guest)

    assert run.stop.kind is StopKind.NOT_MODELED
    assert "ring 3" in run.stop.reason
    assert run.records() == []


def test_the_new_task_gets_its_own_cr3_and_ldt(build):
    # The task's TSS names a second page directory, in which 0x340000 maps the frame
    # at 0x350000, and an LDT whose data segment 0x04 starts at 0x340000: the task
    # reads its FS:0 through both (SDM 7.3, step 12: CR3 and LDTR come from the TSS).
    guest = build(TASKS + """
    .set PAGE_DIR2, 0x304000
    .set PAGE_TABLE2, 0x305000
test_main:
    call setup_tasks
    TSSDESC 0x40, task_tss
    movl $0x11111111, 0x340000
    movl $0x22222222, 0x350000
    call paging_on
    mov $PAGE_TABLE, %esi
    mov $PAGE_TABLE2, %edi
    mov $1024, %ecx
    rep movsl
    movl $0x350003, PAGE_TABLE2 + (0x340000 >> 12) * 4
    movl $PAGE_TABLE2 + 0x3, PAGE_DIR2
    movl $PAGE_DIR2, task_tss + 0x1c          # CR3
    movl $0x48, task_tss + 0x60               # the LDT's selector
    movl $0x04, task_tss + 0x58               # FS: LDT entry 0
    mov $ldt, %eax                            # the LDT's descriptor, at 0x48
    movw $7, task_gdt + 0x48
    movw %ax, task_gdt + 0x4a
    shr $16, %eax
    movb %al, task_gdt + 0x4c
    movb $0x82, task_gdt + 0x4d
    movb $0, task_gdt + 0x4e
    movb %ah, task_gdt + 0x4f
    lgdt task_gdt_desc
    TASKGATE 0x41, 0x40
    SETGATE IDT_BASE, 0x42, on_ldt_task, 0x8E
    movl $on_ldt_task, task_tss + 0x20
    int $0x41
    ret
on_ldt_task:
    mov %cr3, %eax
    REC %eax
    sldt %eax
    REC %eax
    REC %fs:0
    xor %eax, %eax
    jmp finish
    .data
    .align 8
ldt:
    .quad 0x00CF92340000FFFF    # data, base 0x340000, 4 GiB, DPL 0
    .text
""")
    run = run_native(guest)

    assert run.records() == [0x304000, 0x48, 0x22222222]
    assert_same_as_qemu(run)
