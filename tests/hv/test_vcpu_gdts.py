"""Each vCPU runs on its own GDT (docs/ABI.md, "vCPUs"), as on Xen: HYPERVISOR_set_gdt
sets the calling vCPU's (v->arch.pv.gdt_frames), VCPUOP_initialise's gdt_frames and
gdt_ents the initialised vCPU's (arch_set_info_guest calls pv_set_gdt for it).

The guest, in tests/hv/smpguest.py's style: vCPU 0 gives itself a GDT whose selector
0x11 is flat, and vCPU 1, through its vcpu_guest_context, one whose 0x11 has its base
at 0x1000 and whose 0x19 exists only there. Each reads the same offset through 0x11
(so each sees its own base); vCPU 0's load of 0x19 is #GP(0x18), vCPU 1's succeeds;
vCPU 0 reads again after vCPU 1 has run."""

import struct

import pytest

from pvtool.hv import layout
from pvtool.machine.cpu import GDTR
from pvtool.run import Mode, RunOptions, _run_loop
from tests.hv.harness import boot, hypercall
from tests.hv.smpguest import SMP_MACROS
from tests.hv.test_vcpu_op import INITIALISE, UP, context, vcpu_op
from tests.hv.xenguest import EINVAL, HC, neg

FLAT_DATA = 0x00CF92000000FFFF  # DPL 0: Xen raises it to ring 1
DATA_AT_0X1000 = 0x00C792001000FFFF  # base 0x1000, 2 GiB
FIRST, SECOND = 0x11110000, 0x22220000  # at probe and probe + 0x1000

TEXT = SMP_MACROS + r"""
    .set CTX_gdt_frames, 2640
    .set CTX_gdt_ents, 2704
    .set SCHEDOP_yield, 0
    mov ebx, offset trap_table
    HYPERCALL set_trap_table
    mov eax, offset gdt0
    shr eax, 12
    mov [frame_list], eax
    mov ebx, offset frame_list
    mov ecx, 3
    HYPERCALL set_gdt
    mov [set_gdt_result], eax
    mov ax, 0x11
    mov es, ax
    mov eax, es:[probe]
    mov [seen0], eax
    mov ax, 0x19                        /* only vCPU 1's GDT has it: #GP(0x18) */
    mov es, ax
    mov ax, FLAT_RING1_DS
    mov es, ax

    VCPU1_CONTEXT vcpu1_entry, stack1_top
    mov eax, offset gdt1
    shr eax, 12
    mov [ctx + CTX_gdt_frames], eax
    mov dword ptr [ctx + CTX_gdt_ents], 4
    VCPU_OP VCPUOP_initialise, 1, ctx
    mov [init_result], eax
    VCPU_OP VCPUOP_up, 1, 0
wait_vcpu1:
    cmp dword ptr [vcpu1_done], 0
    jne vcpu1_ran
    mov ebx, SCHEDOP_yield
    xor ecx, ecx
    HYPERCALL sched_op
    jmp wait_vcpu1
vcpu1_ran:
    mov ax, 0x11
    mov es, ax
    mov eax, es:[probe]
    mov [seen0_after], eax
"""
HANDLERS = r"""
gp_handler:                             /* record the error code, skip the 2-byte mov */
    push eax
    mov eax, [esp + 4]
    mov [gp_error], eax
    pop eax
    add esp, 4
    add dword ptr [esp], 2
    HYPERVISOR_IRET
upcall1:
    HYPERVISOR_IRET
vcpu1_entry:
    mov ax, 0x11
    mov es, ax
    mov eax, es:[probe]
    mov [seen1], eax
    mov ax, 0x19
    mov es, ax
    mov [es_seen1], es
    mov dword ptr [vcpu1_done], 1
vcpu1_idle:
    mov ebx, SCHEDOP_yield
    xor ecx, ecx
    HYPERCALL sched_op
    jmp vcpu1_idle
"""
DATA = rf"""
trap_table:
    .byte 13, 0
    .word FLAT_RING1_CS
    .long gp_handler
    .long 0, 0
frame_list: .long 0
set_gdt_result: .long 0xffffffff
init_result: .long 0xffffffff
gp_error: .long 0
seen0: .long 0
seen0_after: .long 0
seen1: .long 0
es_seen1: .long 0
vcpu1_done: .long 0
    .balign 4096
probe: .long {FIRST:#x}
    .skip 4092
    .long {SECOND:#x}
    .balign 4096
gdt0: .quad 0, 0, {FLAT_DATA:#x}
    .balign 4096
gdt1: .quad 0, 0, {DATA_AT_0X1000:#x}, {FLAT_DATA:#x}
    .balign 4096
"""
BSS = """
    .balign 4096
ctx: .skip 2800
    .balign 16
stack1: .skip 4096
stack1_top:
"""


@pytest.fixture(scope="module")
def two_gdts(build):
    booted = boot(build(TEXT, handlers=HANDLERS, data=DATA, bss=BSS), vcpus=2)
    result = _run_loop(booted.machine, Mode.PV, RunOptions(max_insns=20_000_000),
                       booted.domain.scheduler)
    assert result.stop.reason == "shutdown (poweroff)", result.stop
    return booted


def test_each_vcpu_reads_through_its_own_gdts_selector(two_gdts):
    assert two_gdts.u32("set_gdt_result") == 0 and two_gdts.u32("init_result") == 0
    assert two_gdts.u32("seen0") == FIRST  # vCPU 0's 0x11: base 0
    assert two_gdts.u32("seen1") == SECOND  # vCPU 1's 0x11: base 0x1000
    assert two_gdts.u32("seen0_after") == FIRST  # vCPU 0's GDT back on its CPU


def test_a_selector_only_the_other_vcpus_gdt_holds_is_gp(two_gdts):
    assert two_gdts.u32("gp_error") == 0x18  # vCPU 0: no descriptor 3
    assert two_gdts.u32("es_seen1") == 0x19  # vCPU 1 loads it


def test_each_vcpu_keeps_its_frames_and_entries(two_gdts):
    vcpu0, vcpu1 = two_gdts.domain.vcpus
    gdt0, gdt1 = two_gdts.guest["gdt0"] >> 12, two_gdts.guest["gdt1"] >> 12
    assert (vcpu0.gdt.frames, vcpu0.gdt.entries) == ((gdt0,), 3)
    assert (vcpu1.gdt.frames, vcpu1.gdt.entries) == ((gdt1,), 4)
    assert vcpu0.gdt.base == layout.GDT and vcpu1.gdt.base == layout.vcpu_gdt(1)
    assert vcpu0.gdt.base != vcpu1.gdt.base


SCRATCH = r"""
    .balign 4096
buf: .skip 4096
gdt_frame: .skip 4096
frame_list: .skip 16
"""


@pytest.fixture
def two(idle_guest):
    return boot(idle_guest, vcpus=2)


def test_initialise_with_a_gdt_it_refuses_leaves_the_vcpu_without_one(two):
    """A context whose GDT holds a TSS is -EINVAL (check_descriptor), and so is one
    whose CS its own GDT does not hold; neither leaves a GDT on the vCPU."""
    tss = 0x0000890010000067
    two.write("gdt_frame", struct.pack("<3Q", 0, tss, FLAT_DATA))
    frames = {"gdt_ents": 3, "gdt_frames": two.guest["gdt_frame"] >> 12}
    assert vcpu_op(two, INITIALISE, 1, context(two, **frames)) == neg(EINVAL)
    two.write("gdt_frame", struct.pack("<3Q", 0, 0, FLAT_DATA))
    assert vcpu_op(two, INITIALISE, 1, context(two, cs=0x09, **frames)) == neg(EINVAL)
    vcpu1 = two.domain.vcpus[1]
    assert (vcpu1.gdt.entries, vcpu1.initialised) == (0, False)


def test_set_gdt_changes_only_the_calling_vcpus_gdt(two):
    two.write("gdt_frame", struct.pack("<3Q", 0, 0, FLAT_DATA))
    two.write_u32s("frame_list", two.guest["gdt_frame"] >> 12)
    assert hypercall(two, HC.set_gdt, two.guest["frame_list"], 3) == 0
    vcpu0, vcpu1 = two.domain.vcpus
    assert vcpu0.gdt.entries == 3 and vcpu1.gdt.entries == 0
    real = struct.unpack("<Q", two.memory.read_phys(layout.vcpu_gdt(1) + 16, 8))[0]
    assert real == 0


def test_the_gdtr_follows_the_vcpu_on_the_cpu(two):
    """Each vCPU's GDT has an address of its own; switching vCPUs switches the GDTR."""
    scheduler, cpu = two.domain.scheduler, two.cpu
    vcpu0, vcpu1 = two.domain.vcpus
    assert vcpu_op(two, INITIALISE, 1, context(two)) == 0
    assert vcpu_op(two, UP, 1) == 0
    assert cpu.descriptor_table(GDTR) == (layout.GDT, layout.GDT_LIMIT)
    scheduler.switch_to(vcpu1)
    assert cpu.descriptor_table(GDTR) == (vcpu1.gdt.address, layout.GDT_LIMIT)
    assert vcpu1.gdt.address == layout.PRIVATE + layout.VCPU_GDT_WINDOWS
    scheduler.switch_to(vcpu0)
    assert cpu.descriptor_table(GDTR) == (layout.GDT, layout.GDT_LIMIT)
