"""Exceptions and software interrupts bounced to a Xen guest's trap table, and the
way back with HYPERVISOR_iret (XEN-ABI.md, "Traps, events, iret").

Each guest registers handlers with set_trap_table, maps shared_info the Xen way, then
raises traps; a handler records its frame as it finds it on its stack, with what
vcpu_info says at that moment, and returns with HYPERVISOR_iret.
"""

import pytest

from pvtool.machine.cpu import CS
from pvtool.machine.stop import StopKind
from tests.hv.xenguest import FLAT_RING1_CS, trap_site_note

FLAT_RING3_CS, FLAT_RING3_SS = 0xE02B, 0xE033
NO_ERROR = 0xEEEEEEEE
EFLAGS_CF, EFLAGS_IF, EFLAGS_IOPL = 1, 1 << 9, 3 << 12
RECORD_WORDS = 8

# A handler that records the frame it gets, then resumes the guest at [resume]:
# record = vector, error code (or NO_ERROR), EIP, CS word, EFLAGS, vcpu_info.arch.cr2,
# the upcall mask in the handler, ESP at the handler's first instruction.
RECORDING_HANDLERS = r"""
    .macro RECORD vector, has_error
    mov ebx, [trap_count]
    shl ebx, 5
    add ebx, offset records
    mov [ebx+28], esp
    mov dword ptr [ebx], \vector
    .if \has_error
    pop eax
    .else
    mov eax, 0xEEEEEEEE
    .endif
    mov [ebx+4], eax
    mov eax, [esp]
    mov [ebx+8], eax
    mov eax, [esp+4]
    mov [ebx+12], eax
    mov eax, [esp+8]
    mov [ebx+16], eax
    mov eax, [shared_page+VCPU_cr2]
    mov [ebx+20], eax
    movzx eax, byte ptr [shared_page+VCPU_upcall_mask]
    mov [ebx+24], eax
    inc dword ptr [trap_count]
    .endm

    .macro RESUME
    mov eax, [resume]
    mov [esp], eax
    HYPERVISOR_IRET
    .endm

bp_handler:
    RECORD 3, 0
    RESUME
gp_handler:
    RECORD 13, 1
    RESUME
pf_handler:
    RECORD 14, 1
    RESUME
int80_handler:
    RECORD 0x80, 0
    RESUME
"""

RECORDING_DATA = r"""
trap_table:
    TRAP 3, 1, bp_handler
    TRAP 13, 0, gp_handler
    TRAP 14, 0, pf_handler
    TRAP 0x80, 5, int80_handler
    .long 0, 0
resume:     .long 0
trap_count: .long 0
records:    .fill 16 * 8, 4, 0x5a5a5a5a
"""

RECORDING_BSS = "shared_page: .skip 4096"

# The recording handlers' data with a trap table whose breakpoint gate has DPL 0: int3
# or `int 3` from the kernel's ring 1 is then a #GP.
BP_FORBIDDEN_DATA = r"""
trap_table:
    TRAP 3, 0, bp_handler
    TRAP 13, 0, gp_handler
    .long 0, 0
resume:     .long 0
trap_count: .long 0
records:    .fill 16 * 8, 4, 0
"""

SETUP = r"""
    mov ebx, offset trap_table
    HYPERCALL set_trap_table
    MAP_SHARED_INFO shared_page
"""


def records(booted, count=None):
    count = booted.u32("trap_count") if count is None else count
    raw = booted.u32s("records", RECORD_WORDS * count)
    keys = ("vector", "error", "eip", "cs", "eflags", "cr2", "mask", "esp")
    return [dict(zip(keys, raw[i * RECORD_WORDS:(i + 1) * RECORD_WORDS], strict=True))
            for i in range(count)]


@pytest.fixture
def trap(run_guest):
    """Run TEXT (which arms [resume] before each trap) under the recording handlers."""

    def _run(text: str, *, data: str = "", handlers: str = ""):
        booted = run_guest(SETUP + text, handlers=RECORDING_HANDLERS + handlers,
                           data=RECORDING_DATA + data, bss=RECORDING_BSS)
        return booted

    return _run


def test_int3_is_bounced_with_the_saved_mask_in_cs_and_the_virtual_if_in_eflags(trap):
    booted = trap(r"""
    mov [esp_before], esp
    mov dword ptr [resume], offset after_first
    int3
after_first:
    mov byte ptr [shared_page+VCPU_upcall_mask], 0
    mov dword ptr [resume], offset after_second
    int3
after_second:
    mov byte ptr [shared_page+VCPU_upcall_mask], 1
""", data="esp_before: .long 0")
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    masked, unmasked = records(booted)
    g = booted.guest
    # Events masked (as at boot): saved mask 1 in CS bits 16+, IF clear.
    assert masked["vector"] == 3 and masked["error"] == NO_ERROR
    assert masked["eip"] == g["after_first"]
    assert masked["cs"] == FLAT_RING1_CS | 1 << 16
    assert masked["eflags"] & EFLAGS_IF == 0
    assert masked["mask"] == 1
    assert masked["esp"] == booted.u32("esp_before") - 12
    # Events unmasked: saved mask 0, IF set; a trap without flag 4 leaves events on.
    assert unmasked["eip"] == g["after_second"]
    assert unmasked["cs"] == FLAT_RING1_CS
    assert unmasked["eflags"] & EFLAGS_IF == EFLAGS_IF
    assert unmasked["mask"] == 0


def test_a_trap_whose_flags_mask_events_sets_the_mask_and_saves_the_old_one(trap):
    booted = trap(r"""
    mov byte ptr [shared_page+VCPU_upcall_mask], 0
    mov dword ptr [resume], offset after_int
    int 0x80
after_int:
    movzx eax, byte ptr [shared_page+VCPU_upcall_mask]
    mov [mask_after_iret], eax
""", data="mask_after_iret: .long 0xff")
    (record,) = records(booted)
    assert record["vector"] == 0x80
    assert record["eip"] == booted.guest["after_int"]
    assert record["mask"] == 1  # masked on entry (trap flags bit 2)
    assert record["cs"] == FLAT_RING1_CS  # the mask it interrupted: 0
    assert record["eflags"] & EFLAGS_IF
    # HYPERVISOR_iret takes the mask from the frame's IF: set, so unmasked again.
    assert booted.u32("mask_after_iret") == 0


def test_a_general_protection_fault_is_bounced_with_its_error_code_at_the_instruction(trap):
    booted = trap(r"""
    mov dword ptr [resume], offset after_lgdt
lgdt_insn:
    lgdt [pseudo_descriptor]
after_lgdt:
    mov dword ptr [resume], offset after_load
    mov ax, 0x1234
load_insn:
    mov ds, ax
after_load:
""", data="pseudo_descriptor: .word 0xffff\n .long 0")
    lgdt, bad_selector = records(booted)
    g = booted.guest
    assert (lgdt["vector"], lgdt["error"], lgdt["eip"]) == (13, 0, g["lgdt_insn"])
    assert lgdt["cs"] & 0xFFFF == FLAT_RING1_CS
    assert (bad_selector["vector"], bad_selector["error"]) == (13, 0x1234)
    assert bad_selector["eip"] == g["load_insn"]
    # The GDT is unchanged: the guest still runs on Xen's flat selectors.
    assert booted.cpu.read(CS) & 0xFFFF == FLAT_RING1_CS


def test_page_faults_give_the_error_code_and_the_address_in_vcpu_info_cr2(trap):
    booted = trap(r"""
    mov dword ptr [resume], offset after_read
read_insn:
    mov eax, [0x40000123]
after_read:
    mov dword ptr [resume], offset after_write
write_insn:
    mov dword ptr [0x40001000], 1
after_write:
""")
    read, write = records(booted)
    g = booted.guest
    assert (read["vector"], read["error"], read["eip"]) == (14, 0, g["read_insn"])
    assert read["cr2"] == 0x40000123
    assert (write["vector"], write["error"], write["eip"]) == (14, 2, g["write_insn"])
    assert write["cr2"] == 0x40001000


@pytest.mark.parametrize("target", [0xFC400000 + 0xE018, 0xFC000000, 0xFC411000],
                         ids=["gdt", "machine-to-phys", "trampoline"])
def test_a_store_into_the_hypervisors_read_only_area_page_faults(trap, target):
    """The GDT, the machine-to-phys table and the trampolines are mapped in every
    address space, read-only: a ring-1 store is a protection fault (error code 3)."""
    booted = trap(rf"""
    mov dword ptr [resume], offset after_store
    mov eax, [{target:#x}]
    mov [value_seen], eax
store_insn:
    mov dword ptr [{target:#x}], 0xfee1dead
after_store:
""", data="value_seen: .long 0")
    (fault,) = records(booted)
    assert (fault["vector"], fault["error"]) == (14, 3)
    assert fault["eip"] == booted.guest["store_insn"]
    assert fault["cr2"] == target
    assert booted.memory.read_u32(target) == booted.u32("value_seen") != 0xFEE1DEAD


@pytest.mark.parametrize("vector", [0x81, 14], ids=["no-entry", "page-fault-vector"])
def test_int_n_not_allowed_from_ring_1_is_a_gp_naming_the_vector(trap, vector):
    """A vector without a trap_info entry (or with DPL 0) raised by `int n`:
    #GP(vector * 8 + 2), EIP on the int instruction (SDM "INT n", XEN-ABI.md).
    `int 14` raises the #PF's vector but is no fault: the machine's direct #PF path
    (on_page_fault) leaves it to these rules, and ptwr never sees it."""
    booted = trap(rf"""
    mov dword ptr [resume], offset after_int
int_insn:
    int {vector:#x}
after_int:
""")
    (fault,) = records(booted)
    assert (fault["vector"], fault["error"]) == (13, vector * 8 + 2)
    assert fault["eip"] == booted.guest["int_insn"]
    assert booted.machine.exits["ptwr"] == 0


def test_an_int3_the_trap_table_forbids_is_a_gp_at_the_one_byte_instruction(run_guest):
    """int3 (0xCC) is one byte: the #GP it raises when its trap_info DPL is below the
    caller's ring points at it, not a byte before it."""
    booted = run_guest(SETUP + r"""
    mov dword ptr [resume], offset after_int3
int3_insn:
    int3
after_int3:
""", handlers=RECORDING_HANDLERS, bss=RECORDING_BSS, data=BP_FORBIDDEN_DATA)
    (fault,) = records(booted)
    assert (fault["vector"], fault["error"]) == (13, 3 * 8 + 2)
    assert fault["eip"] == booted.guest["int3_insn"]


def test_hypervisor_iret_restores_eax_esp_flags_and_the_virtual_if(run_guest):
    """The handler rewrites its frame: EAX (pushed by the iret entry), CF and IF in
    EFLAGS, and asks for IOPL 3, which a ring-1 kernel must never get."""
    booted = run_guest(r"""
    mov ebx, offset trap_table
    HYPERCALL set_trap_table
    MAP_SHARED_INFO shared_page
    mov [esp_before], esp
    clc
    int 0x80
    setc byte ptr [cf_after]
    mov [eax_after], eax
    mov [esp_after], esp
    pushfd
    pop dword ptr [eflags_after]
    movzx eax, byte ptr [shared_page+VCPU_upcall_mask]
    mov [mask_after], eax
""", handlers=r"""
int80_handler:
    or dword ptr [esp+8], 0x3201   /* IOPL 3, IF, CF */
    mov eax, 0x600df00d
    HYPERVISOR_IRET
""", data=r"""
trap_table:
    TRAP 0x80, 1, int80_handler
    .long 0, 0
esp_before: .long 0
esp_after: .long 0
eax_after: .long 0
eflags_after: .long 0
mask_after: .long 0xff
cf_after: .long 0
""", bss="shared_page: .skip 4096")
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.u32("eax_after") == 0x600DF00D
    assert booted.u32("esp_after") == booted.u32("esp_before")
    assert booted.u32("cf_after") == 1
    assert booted.u32("mask_after") == 0  # the frame's IF was set
    eflags = booted.u32("eflags_after")
    assert eflags & EFLAGS_IOPL == 0
    assert eflags & EFLAGS_IF  # the real IF stays set: events are the mask's business


def test_hypervisor_iret_with_if_clear_masks_events(run_guest):
    booted = run_guest(r"""
    mov ebx, offset trap_table
    HYPERCALL set_trap_table
    MAP_SHARED_INFO shared_page
    mov byte ptr [shared_page+VCPU_upcall_mask], 0
    int 0x80
    movzx eax, byte ptr [shared_page+VCPU_upcall_mask]
    mov [mask_after], eax
""", handlers=r"""
int80_handler:
    and dword ptr [esp+8], ~0x200
    HYPERVISOR_IRET
""", data=r"""
trap_table:
    TRAP 0x80, 1, int80_handler
    .long 0, 0
mask_after: .long 0xff
""", bss="shared_page: .skip 4096")
    assert booted.u32("mask_after") == 1


IRET_TO = r"""
    mov ebx, offset trap_table
    HYPERCALL set_trap_table
    int 0x80
    mov dword ptr [returned], 1
"""

IRET_TO_HANDLER = r"""
int80_handler:
    mov dword ptr [esp+4], {cs:#x}
    HYPERVISOR_IRET
"""

IRET_TO_DATA = r"""
trap_table:
    TRAP 0x80, 1, int80_handler
    .long 0, 0
returned: .long 0
"""


@pytest.mark.parametrize("cs", [0xE018, 0xE008, 0x0008, 0xE01A, 0x1235, 0xE009, 0x0009],
                         ids=["ring0-flat", "ring0-xen", "ring0-guest", "ring2",
                              "garbage", "xen-code-rpl1", "empty-entry-rpl1"])
def test_hypervisor_iret_to_a_selector_the_kernel_may_not_use_crashes_the_domain(
        run_guest, cs):
    """Ring 0 is Xen's (a return there crashes the domain, XEN-ABI.md); a selector
    that names no ring-1 code segment cannot be returned to either."""
    booted = run_guest(IRET_TO, handlers=IRET_TO_HANDLER.format(cs=cs), data=IRET_TO_DATA)
    stop = booted.machine.stop
    assert stop.kind is StopKind.CRASH
    assert "iret" in stop.reason.lower()
    assert booted.u32("returned") == 0
    assert booted.cpu.cpl == 1


def test_an_exception_without_a_handler_crashes_the_domain_with_its_name(run_guest):
    booted = run_guest("mov eax, [0x40000000]")
    stop = booted.machine.stop
    assert stop.kind is StopKind.CRASH
    assert "#PF" in stop.reason


def test_a_bounce_onto_an_unmapped_kernel_stack_crashes_the_domain(run_guest):
    booted = run_guest(r"""
    mov ebx, offset trap_table
    HYPERCALL set_trap_table
    mov esp, 0x40000000
    int3
    mov dword ptr [returned], 1
""", handlers="bp_handler:\n    HYPERVISOR_IRET", data=r"""
trap_table:
    TRAP 3, 3, bp_handler
    .long 0, 0
returned: .long 0
""")
    stop = booted.machine.stop
    assert stop.kind is StopKind.CRASH
    assert "stack" in stop.reason
    assert booted.u32("returned") == 0


def test_set_trap_table_merges_and_a_null_table_clears_it(run_guest):
    """Entries are added to the table (Xen copies them one by one); a null pointer
    clears it, after which int3 has no handler and crashes the domain."""
    booted = run_guest(r"""
    mov ebx, offset first_table
    HYPERCALL set_trap_table
    mov ebx, offset second_table
    HYPERCALL set_trap_table
    int3
    int 0x80
    cmp dword ptr [hits], 2
    jne give_up
    xor ebx, ebx
    HYPERCALL set_trap_table
    mov [cleared_rc], eax
    mov dword ptr [before_last], 1
    int3
give_up:
    mov dword ptr [after_last], 1
""", handlers=r"""
any_handler:
    inc dword ptr [hits]
    HYPERVISOR_IRET
""", data=r"""
first_table:
    TRAP 3, 3, any_handler
    .long 0, 0
second_table:
    TRAP 0x80, 3, any_handler
    .long 0, 0
hits: .long 0
cleared_rc: .long 0xffffffff
before_last: .long 0
after_last: .long 0
""")
    assert booted.u32("hits") == 2
    assert booted.u32("cleared_rc") == 0
    assert booted.u32("before_last") == 1
    assert booted.machine.stop.kind is StopKind.CRASH
    assert booted.u32("after_last") == 0


# -- ring 3 -------------------------------------------------------------------------------
USER = r"""
    mov ebx, offset trap_table
    HYPERCALL set_trap_table
    MAP_SHARED_INFO shared_page
    /* the kernel stack for traps from ring 3 */
    mov ebx, FLAT_RING1_DS
    mov ecx, offset kernel_stack_top
    HYPERCALL stack_switch
    mov [stack_switch_rc], eax
    /* user code and user stack pages: mapped with _PAGE_USER */
    mov ebx, offset user_code
    lea ecx, [ebx + 0x67]
    xor edx, edx
    mov esi, UVMF_INVLPG
    HYPERCALL update_va_mapping
    mov ebx, offset user_stack
    lea ecx, [ebx + 0x67]
    xor edx, edx
    mov esi, UVMF_INVLPG
    HYPERCALL update_va_mapping
    /* HYPERVISOR_iret to ring 3: {EAX, EIP, CS, EFLAGS, ESP, SS} */
    push 0xe033
    push offset user_stack + 4096
    push 0x202
    push 0xe02b
    push offset user_code
    mov eax, 0x1234abcd
    HYPERVISOR_IRET
"""

USER_HANDLERS = RECORDING_HANDLERS + r"""
user_bp_handler:
    mov eax, [esp+12]
    mov [user_esp_seen], eax
    mov eax, [esp+16]
    mov [user_ss_seen], eax
    mov [handler_cs], cs
    RECORD 3, 0
    SHUTDOWN SHUTDOWN_poweroff
user_gp_handler:
    mov eax, [esp+16]
    mov [user_esp_seen], eax
    RECORD 13, 1
    SHUTDOWN SHUTDOWN_poweroff

    .balign 4096
user_code:
    mov [user_stack], eax     /* the EAX HYPERVISOR_iret restored */
    mov eax, [user_stack]
    mov [user_stack + 4], esp
{user}
user_spin:
    jmp user_spin
    .balign 4096
"""

USER_DATA = r"""
trap_table:
    TRAP 3, 3, user_bp_handler
    TRAP 13, 0, user_gp_handler
    .long 0, 0
resume:     .long 0
trap_count: .long 0
records:    .fill 16 * 8, 4, 0
stack_switch_rc: .long 0xffffffff
user_esp_seen: .long 0
user_ss_seen: .long 0
handler_cs: .long 0
"""

USER_BSS = RECORDING_BSS + r"""
    .balign 4096
user_stack: .skip 4096
    .balign 4096
kernel_stack: .skip 4096
kernel_stack_top:
"""


def user_run(run_guest, user: str):
    return run_guest(USER, handlers=USER_HANDLERS.replace("{user}", user), data=USER_DATA,
                     bss=USER_BSS)


def test_a_trap_from_ring_3_lands_on_the_stack_switch_stack_with_esp_and_ss(run_guest):
    booted = user_run(run_guest, r"""
user_int3:
    int3
user_after_int3:
""")
    g = booted.guest
    assert booted.u32("stack_switch_rc") == 0
    (trap,) = records(booted, 1)
    assert trap["vector"] == 3
    assert trap["eip"] == g["user_after_int3"]
    # The iret's EFLAGS had IF set: events unmasked in user mode, saved mask 0.
    assert trap["cs"] == FLAT_RING3_CS
    assert trap["eflags"] & EFLAGS_IF
    assert trap["esp"] == g["kernel_stack_top"] - 20
    assert booted.u32("user_esp_seen") == g["user_stack"] + 4096
    assert booted.u32("user_ss_seen") == FLAT_RING3_SS
    assert booted.u32("handler_cs") == FLAT_RING1_CS
    # HYPERVISOR_iret gave ring 3 the EAX of its frame.
    assert booted.u32("user_stack") == 0x1234ABCD


@pytest.mark.parametrize("insn", ["cli", "mov eax, cr0", "wrmsr", "mov cr3, eax"])
def test_a_privileged_instruction_in_ring_3_is_a_gp_for_the_kernel_not_emulated(
        run_guest, insn):
    """Xen emulates privileged instructions for the guest kernel only: from user mode
    they are the kernel's #GP to handle (a user program must not mask the kernel's
    events, read its control registers or switch its page tables)."""
    booted = user_run(run_guest, f"""
    mov eax, 0x00100000
    xor ecx, ecx
    xor edx, edx
user_insn:
    {insn}
""")
    g = booted.guest
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    (trap,) = records(booted, 1)
    assert (trap["vector"], trap["error"]) == (13, 0)
    assert trap["eip"] == g["user_insn"]
    assert trap["cs"] == FLAT_RING3_CS
    assert booted.machine.exits["emulated"] == 0
    assert booted.domain.upcall_mask == 0  # as HYPERVISOR_iret left it for user mode


def test_int_0x82_from_ring_3_is_not_a_hypercall(run_guest):
    """Only the kernel (ring 1) may call the hypervisor: from ring 3, `int 0x82` is
    a #GP(0x82 * 8 + 2) for the kernel, and the hypercall in EAX is not made."""
    booted = user_run(run_guest, r"""
    mov eax, HC_sched_op
    mov ebx, SCHEDOP_shutdown
    mov ecx, offset user_stack + 64   /* reason 0 (zeroed .bss): poweroff */
user_insn:
    int 0x82
""")
    g = booted.guest
    (trap,) = records(booted, 1)
    assert (trap["vector"], trap["error"]) == (13, 0x82 * 8 + 2)
    assert trap["eip"] == g["user_insn"]
    assert booted.domain.hypercall_counts["sched_op"] == 1  # the handler's own shutdown


def test_hypervisor_iret_with_an_unreadable_frame_crashes_the_domain(run_guest):
    """Xen's do_iret crashes a domain whose frame it cannot read: there is no caller
    to return an error to (the iret entry has no ret)."""
    booted = run_guest(r"""
    mov esp, 0x400000   /* the end of the bootstrap mapping: the push fits, the frame not */
    HYPERVISOR_IRET
""")
    assert booted.pte(0x3FF000) & 1 and not booted.pte(0x400000) & 1
    stop = booted.machine.stop
    assert stop.kind is StopKind.CRASH
    assert "iret" in stop.reason.lower()


def test_the_two_byte_int_3_forbidden_by_the_trap_table_is_a_gp_two_bytes_back(run_guest):
    booted = run_guest(SETUP + r"""
    mov dword ptr [resume], offset after_int
int_insn:
    .byte 0xcd, 0x03
after_int:
""", handlers=RECORDING_HANDLERS, bss=RECORDING_BSS, data=BP_FORBIDDEN_DATA)
    (fault,) = records(booted)
    assert (fault["vector"], fault["error"]) == (13, 3 * 8 + 2)
    assert fault["eip"] == booted.guest["int_insn"]


@pytest.mark.parametrize("cs", [0xE00B, 0xE021, 0x0031], ids=["xen-code", "data", "empty"])
def test_a_handler_whose_cs_is_no_ring_1_code_segment_crashes_the_domain_when_used(
        run_guest, cs):
    booted = run_guest(r"""
    mov ebx, offset trap_table
    HYPERCALL set_trap_table
    mov [set_rc], eax
    int3
    mov dword ptr [returned], 1
""", handlers="bp_handler:\n    HYPERVISOR_IRET", data=rf"""
trap_table:
    .byte 3, 3
    .word {cs:#x}
    .long bp_handler
    .long 0, 0
set_rc: .long 0xffffffff
returned: .long 0
""")
    assert booted.u32("set_rc") == 0  # Xen takes it: the selector is only used later
    stop = booted.machine.stop
    assert stop.kind is StopKind.CRASH
    assert "cs" in stop.reason
    assert booted.u32("returned") == 0


def user_run_with(run_guest, user: str, *, kernel_ss: int = 0xE021, user_ss: int = 0xE033,
                  extra: str = ""):
    setup = USER.replace("mov ebx, FLAT_RING1_DS", f"mov ebx, {kernel_ss:#x}") \
                .replace("push 0xe033", f"push {user_ss:#x}")
    handlers = USER_HANDLERS.replace("{user}", user).replace(
        "    mov [handler_cs], cs\n", "    mov [handler_cs], cs\n    mov [handler_ss], ss\n")
    handlers += extra
    return run_guest(setup, handlers=handlers, data=USER_DATA + "handler_ss: .long 0",
                     bss=USER_BSS)


def test_stack_switch_gives_an_rpl_0_stack_selector_the_kernels_rpl(run_guest):
    booted = user_run_with(run_guest, "    int3\n", kernel_ss=0xE020)
    assert booted.u32("stack_switch_rc") == 0
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.u32("handler_ss") == 0xE021
    (trap,) = records(booted, 1)
    assert trap["esp"] == booted.guest["kernel_stack_top"] - 20


@pytest.mark.parametrize("kernel_ss", [0xE019, 0xE033, 0x0029], ids=["code", "ring3-data",
                                                                     "empty"])
def test_a_trap_from_ring_3_onto_an_unusable_kernel_stack_crashes_the_domain(
        run_guest, kernel_ss):
    booted = user_run_with(run_guest, "    int3\n", kernel_ss=kernel_ss)
    stop = booted.machine.stop
    assert stop.kind is StopKind.CRASH
    assert f"{kernel_ss:#x}" in stop.reason  # the reason names the selector at fault
    assert booted.u32("trap_count") == 0


@pytest.mark.parametrize("user_ss", [0xE02B, 0xE021, 0xE030, 0x0033],
                         ids=["code", "ring1-data", "rpl0", "empty"])
def test_hypervisor_iret_to_ring_3_with_an_unusable_stack_crashes_the_domain(
        run_guest, user_ss):
    booted = user_run_with(run_guest, "    mov dword ptr [user_stack + 8], 1\n",
                           user_ss=user_ss)
    stop = booted.machine.stop
    assert stop.kind is StopKind.CRASH
    assert "iret" in stop.reason.lower()
    assert booted.u32(booted.guest["user_stack"] + 8) == 0


def test_a_trap_site_reached_from_ring_3_is_an_int3_for_the_kernel_not_emulated(run_guest):
    """A user program that executes a recorded trap site (say, in a page the kernel
    mapped for it) gets no kernel instruction emulated: it is the kernel's #BP."""
    booted = user_run_with(run_guest, r"""
user_site:
    int3
""", extra=trap_site_note(("user_site", b"\xfa")))
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.machine.exits["trap-site"] == 0
    (trap,) = records(booted, 1)
    assert trap["vector"] == 3
    assert booted.domain.upcall_mask == 0  # no cli was emulated for the user


@pytest.mark.parametrize("handlers", ["bp", "bp-and-pf"])
def test_a_trap_table_pointing_at_unmapped_memory_ends_in_a_clean_crash(run_guest, handlers):
    """The bounce lands on an unmapped handler: the fetch page-faults, and that #PF is
    either unhandled (a crash naming it) or bounced to an equally unmapped handler,
    over and over, until the kernel stack runs out (a crash naming the stack). Either
    way the run stops with a reason, never loops forever or raises."""
    table = "    TRAP 3, 3, 0x40000000\n"
    if handlers == "bp-and-pf":
        table += "    TRAP 14, 0, 0x40001000\n"
    booted = run_guest(r"""
    mov ebx, offset trap_table
    HYPERCALL set_trap_table
    int3
    mov dword ptr [returned], 1
""", data="trap_table:\n" + table + "    .long 0, 0\nreturned: .long 0\n")
    stop = booted.machine.stop
    assert stop.kind is StopKind.CRASH
    assert ("#PF" in stop.reason) if handlers == "bp" else ("stack" in stop.reason)
    assert booted.u32("returned") == 0
