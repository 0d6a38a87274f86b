"""Hardware debugging in a PV domain, as the CPU and Xen give it: the breakpoints DR7
enables fire and #DB reaches the guest's handler, with DR6 saying why (Intel SDM vol.
3B, 18.2-18.3; Xen: the guest's debug registers are loaded into the CPU while DR7
enables one, and do_debug injects the #DB, xen/arch/x86/traps.c).

- An instruction breakpoint is a fault: EIP on the instruction, which has not run;
  the handler sets EFLAGS.RF in its frame for it to run once.
- A data breakpoint (writes, or reads and writes; 1, 2, 4 or 8 bytes) is a trap:
  EIP after the instruction, which has run.
- EFLAGS.TF single-steps: a #DB after each instruction, the handler entered with TF
  clear.
- DR6 (get_debugreg(6), or `mov eax, dr6` which Xen emulates for the kernel): B0-B3
  for the breakpoints the #DB is for, BS for a single step, its reserved bits ones.
No #DB carries an error code.
"""

import pytest

from tests.hv.test_traps import RECORDING_BSS, RECORDING_HANDLERS, records
from tests.hv.xenguest import DEFAULT_NOTES, PAE_NOTES

DB = 1
FLAT_RING1_CS = 0xE019
DR6_RESERVED = 0xFFFF0FF0
DR6_BS = 1 << 14
EFLAGS_TF, EFLAGS_RF = 0x100, 0x10000
NO_ERROR = 0xEEEEEEEE  # what RECORD stores for an exception without an error code

DATA = r"""
trap_table:
    TRAP 1, 0, db_handler
    TRAP 3, 1, bp_handler
    TRAP 13, 0, gp_handler
    .long 0, 0
resume:     .long 0
trap_count: .long 0
records:    .fill 16 * 8, 4, 0x5a5a5a5a
dr6_seen:   .fill 16, 4, 0
counter:    .long 0
rc:         .fill 4, 4, 0xffffffff
    .balign 16
watched:    .long 0, 0, 0, 0
"""

# The #DB handler: records the frame, then DR6 (through get_debugreg, or a `mov` from
# DR6 with DR6_BY_MOV), then what the test asks of the frame (FRAME_FIX), and returns.
DB_HANDLER = r"""
db_handler:
    RECORD 1, 0
    {read_dr6}
    mov edx, [trap_count]
    mov [dr6_seen + 4 * edx - 4], eax
    {frame_fix}
    HYPERVISOR_IRET
"""
DR6_BY_HYPERCALL = "mov ebx, 6\n    HYPERCALL get_debugreg"
DR6_BY_MOV = "mov eax, dr6"
SET_RF = "or dword ptr [esp + 8], 0x10000  /* RF: the instruction runs this time */"


def set_debugreg(reg: int, value: str, rc: int | None = 0) -> str:
    """set_debugreg(REG, VALUE), its result kept in rc[RC] (None: not kept)."""
    keep = "" if rc is None else f"    mov [rc + {4 * rc}], eax\n"
    return f"""
    mov ebx, {reg}
    mov ecx, {value}
    HYPERCALL set_debugreg
""" + keep


def dr7(index: int, condition: int = 0, length: int = 0) -> int:
    """L<index> with R/W and LEN (SDM vol. 3B, 18.2.4)."""
    return 1 << (2 * index) | (condition | length << 2) << (16 + 4 * index)


def debug_run(run_guest, text: str, *, read_dr6: str = DR6_BY_HYPERCALL,
              frame_fix: str = "", notes=DEFAULT_NOTES):
    handler = DB_HANDLER.format(read_dr6=read_dr6, frame_fix=frame_fix)
    setup = "    mov ebx, offset trap_table\n    HYPERCALL set_trap_table\n"
    return run_guest(setup + text, handlers=RECORDING_HANDLERS + handler, data=DATA,
                     bss=RECORDING_BSS, notes=notes)


# The tests that arm breakpoints run on 2-level and PAE paging alike (Xen's own test
# guests are PAE kernels).
PAGING = pytest.mark.parametrize("notes", [DEFAULT_NOTES, PAE_NOTES], ids=["2level", "pae"])


def frames(booted):
    return [(r["vector"], r["error"], r["eip"], r["cs"] & 0xFFFF) for r in records(booted)]


# -- instruction breakpoints -------------------------------------------------------------
LOOP_TWICE = r"""
    mov ecx, 2
target:
    inc dword ptr [counter]
    loop target
"""


@PAGING
def test_an_instruction_breakpoint_is_a_fault_before_the_instruction_each_time(
        run_guest, notes):
    booted = debug_run(run_guest, set_debugreg(0, "offset target")
                       + set_debugreg(7, hex(dr7(0)), rc=1) + LOOP_TWICE, frame_fix=SET_RF,
                       notes=notes)
    target = booted.guest["target"]
    assert booted.u32s("rc", 2) == (0, 0)
    assert frames(booted) == [(DB, NO_ERROR, target, FLAT_RING1_CS)] * 2
    assert booted.u32s("dr6_seen", 2) == (DR6_RESERVED | 1,) * 2  # B0
    assert booted.u32("counter") == 2  # each time the instruction then ran once
    assert booted.machine.stop.reason == "shutdown (poweroff)"


def test_without_rf_in_its_frame_the_instruction_breakpoint_fires_again(run_guest):
    """The handler sets RF only at its third #DB: the CPU would fault again and again."""
    fix = "cmp dword ptr [trap_count], 3\n    jb 1f\n    " + SET_RF + "\n1:"
    booted = debug_run(run_guest, set_debugreg(0, "offset target")
                       + set_debugreg(7, hex(dr7(0))) + LOOP_TWICE.replace("2", "1"),
                       frame_fix=fix)
    assert [f[2] for f in frames(booted)] == [booted.guest["target"]] * 3
    assert booted.u32("counter") == 1


def test_breakpoint_3_set_by_mov_to_dr_fires_and_mov_from_dr6_says_b3(run_guest):
    booted = debug_run(run_guest, r"""
    mov eax, offset target
    mov dr3, eax
    mov eax, 0xc0       /* L3 and G3 */
    mov dr7, eax
""" + LOOP_TWICE.replace("2", "1"), read_dr6=DR6_BY_MOV, frame_fix=SET_RF)
    assert frames(booted) == [(DB, NO_ERROR, booted.guest["target"], FLAT_RING1_CS)]
    assert booted.u32("dr6_seen") == DR6_RESERVED | 1 << 3
    assert booted.machine.exits["emulated"] == 3  # two movs to DR, one from DR6


def test_a_disabled_or_disarmed_breakpoint_never_fires(run_guest):
    booted = debug_run(run_guest, set_debugreg(0, "offset target")
                       + set_debugreg(7, hex(0b11 << 16))  # R/W and LEN, no enable
                       + "    call target\n"
                       + set_debugreg(7, hex(dr7(0))) + set_debugreg(7, "0") + r"""
    call target
    jmp done
target:
    inc dword ptr [counter]
    ret
done:
""")
    assert records(booted) == []
    assert booted.u32("counter") == 2


# -- data breakpoints -----------------------------------------------------------------------
STORES = r"""
    mov eax, [watched]           /* a read: no #DB for a write breakpoint */
    mov dword ptr [watched + 4], 1   /* past it */
store:
    mov dword ptr [watched], 5
after_store:
    mov word ptr [watched - 1], 7    /* its second byte is watched's first */
after_overlap:
    inc dword ptr [counter]
"""


@PAGING
def test_a_write_breakpoint_is_a_trap_after_each_store_that_touches_it(run_guest, notes):
    booted = debug_run(run_guest, set_debugreg(1, "offset watched")
                       + set_debugreg(7, hex(dr7(1, condition=0b01, length=0b11)), rc=1)
                       + STORES, notes=notes)
    g = booted.guest
    assert booted.u32s("rc", 2) == (0, 0)
    assert frames(booted) == [(DB, NO_ERROR, g["after_store"], FLAT_RING1_CS),
                              (DB, NO_ERROR, g["after_overlap"], FLAT_RING1_CS)]
    assert booted.u32s("dr6_seen", 2) == (DR6_RESERVED | 1 << 1,) * 2  # B1
    assert booted.u32s("watched", 2) == (0, 1)  # the stores ran: 5, then 0x07 below it
    assert booted.u32("counter") == 1


def test_a_read_write_breakpoint_catches_a_read_and_its_length_bounds_it(run_guest):
    """R/W 11 with LEN 01 (2 bytes) on watched + 2: the read of watched's four bytes
    overlaps it; the stores to watched + 4 and below watched do not."""
    booted = debug_run(run_guest, set_debugreg(2, "offset watched + 2")
                       + set_debugreg(7, hex(dr7(2, condition=0b11, length=0b01)))
                       + r"""
    mov dword ptr [watched + 4], 1
    mov word ptr [watched - 2], 7
load:
    mov eax, [watched]
after_load:
""")
    assert frames(booted) == [(DB, NO_ERROR, booted.guest["after_load"], FLAT_RING1_CS)]
    assert booted.u32("dr6_seen") == DR6_RESERVED | 1 << 2


# -- single step ----------------------------------------------------------------------------
STEP_FIX = r"""
    cmp dword ptr [trap_count], 3
    jb 1f
    and dword ptr [esp + 8], ~0x100   /* three steps: TF off in the frame */
1:"""


@PAGING
def test_tf_single_steps_each_instruction_with_bs_in_dr6(run_guest, notes):
    booted = debug_run(run_guest, notes=notes, text=r"""
    pushfd
    or dword ptr [esp], 0x100
    popfd
step1:
    inc dword ptr [counter]
step2:
    inc dword ptr [counter]
step3:
    inc dword ptr [counter]
step4:
    inc dword ptr [counter]
""", frame_fix=STEP_FIX)
    g = booted.guest
    steps = frames(booted)
    # The first trap follows the instruction after the popfd that set TF (SDM vol. 3B,
    # 18.3.1.4: the instruction that sets TF is not itself stepped).
    assert [eip for _, _, eip, _ in steps] == [g["step2"], g["step3"], g["step4"]]
    assert {(vector, error) for vector, error, _, _ in steps} == {(DB, NO_ERROR)}
    assert all(r["eflags"] & EFLAGS_TF for r in records(booted))  # the stepped flags
    assert booted.u32s("dr6_seen", 3) == (DR6_RESERVED | DR6_BS,) * 3
    assert booted.u32("counter") == 4


@pytest.mark.parametrize("how", ["hypercall", "mov"])
def test_dr6_written_by_the_kernel_keeps_its_reserved_bits(run_guest, how):
    write = set_debugreg(6, "0") if how == "hypercall" else "    xor eax, eax\n    mov dr6, eax\n"
    booted = debug_run(run_guest, write + "    mov eax, dr6\n    mov [counter], eax\n")
    assert booted.u32("counter") == DR6_RESERVED


# -- from user mode -------------------------------------------------------------------------
def test_a_breakpoint_in_user_mode_is_the_kernels_db_with_the_user_frame(run_guest):
    """The kernel arms DR0 on a user instruction: the #DB reaches the kernel's handler
    on its stack_switch stack, the frame naming ring 3."""
    from tests.hv.test_traps import USER, USER_BSS, USER_DATA, USER_HANDLERS

    handlers = USER_HANDLERS.replace("{user}", "user_target:\n    nop\n") + r"""
user_db_handler:
    RECORD 1, 0
    SHUTDOWN SHUTDOWN_poweroff
"""
    data = USER_DATA.replace("TRAP 3, 3, user_bp_handler",
                             "TRAP 1, 0, user_db_handler\n    TRAP 3, 3, user_bp_handler")
    arm = set_debugreg(0, "offset user_target", rc=None) + set_debugreg(7, hex(dr7(0)), rc=None)
    booted = run_guest(arm + USER, handlers=handlers, data=data, bss=USER_BSS)
    (trap,) = records(booted, 1)
    assert (trap["vector"], trap["error"], trap["eip"], trap["cs"] & 0xFFFF) == \
        (DB, NO_ERROR, booted.guest["user_target"], 0xE02B)
    assert booted.domain.debug_registers.read(6) == DR6_RESERVED | 1
