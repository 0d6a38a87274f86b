"""The 64-bit PV entry and exit paths, run on a small 64-bit domain at CPL 3
(tests/hv/longmode.py) through the machine's real hooks. Expected values are Xen's,
from XEN-ABI64.md Part 1 (section cited per test)."""

import struct

import pytest
from unicorn import x86_const as X

from pvtool.abi.pvtool import VCPU_REGS_64
from pvtool.abi.xen import HYPERCALL_ARGUMENT_REGISTERS, CallbackType
from pvtool.abi.xen64 import VGCF_IN_SYSCALL, hypercall_page_64
from pvtool.hv.entry64 import IN_STATE_ORDER
from pvtool.hv.vcpu64 import Callback64, TrapInfo64
from pvtool.machine.cpu import CR3, FS_BASE, GS_BASE, R11, RAX, RCX, RFLAGS, RIP, RSP
from pvtool.machine.cpu_state import SLOT_ORDER_64
from pvtool.machine.exits import Exit
from pvtool.x86.isa import assemble
from tests.hv.longmode import (
    HYPERCALL_PAGE,
    KERNEL_CODE,
    KERNEL_L4,
    KERNEL_STACK,
    USER_CODE,
    USER_L4,
    USER_STACK,
    VCPU_INFO,
    LongModeDomain,
    ready_domain,
)

ENOSYS = (1 << 64) - 38
EINVAL = (1 << 64) - 22
IRET = HYPERCALL_PAGE + 23 * 32
HANDLER = KERNEL_CODE + 0x1000  # a handler: its first instruction is where runs stop
USER_DONE = USER_CODE + 0x800


def hypercall(number: int) -> str:
    return f"mov rax, {HYPERCALL_PAGE + 32 * number}; call rax"


def run_kernel(dom: LongModeDomain, source: str, until: int | None = None,
               count: int = 10_000) -> None:
    """Run SOURCE in kernel mode to its end, or until UNTIL (or COUNT instructions)."""
    code = assemble(source, KERNEL_CODE, 64)
    dom.memory.write_phys(KERNEL_CODE, code + b"\x90")
    dom.memory.write_phys(HANDLER, b"\x90")
    dom.enter(KERNEL_CODE, KERNEL_STACK)
    dom.run(KERNEL_CODE + len(code) if until is None else until, count)


def run_user(dom: LongModeDomain, source: str, until: int = HANDLER,
             count: int = 10_000) -> int:
    """Run SOURCE in user mode until UNTIL (or COUNT instructions); the address after
    SOURCE."""
    code = assemble(source, USER_CODE, 64)
    dom.memory.write_phys(USER_CODE, code + b"\x90")
    dom.memory.write_phys(HANDLER, b"\x90")
    dom.enter_user(USER_CODE, USER_STACK)
    dom.run(until, count)
    return USER_CODE + len(code)


@pytest.fixture
def dom() -> LongModeDomain:
    return ready_domain()


def reg(dom: LongModeDomain, which: int) -> int:
    return dom.machine.cpu.read(which)


# -- §1.2 the hypercall page and hypercalls by syscall ----------------------------------
def test_hypercall_page_64_has_xens_entries_and_int3_filler():
    page = hypercall_page_64()
    assert page[0:14] == bytes.fromhex("51 4153 b800000000 0f05 415b 59 c3")
    assert page[29 * 32:29 * 32 + 14] == bytes.fromhex("51 4153 b81d000000 0f05 415b 59 c3")
    assert page[23 * 32:23 * 32 + 11] == bytes.fromhex("51 4153 50 b817000000 0f05")
    assert page[14:32] == b"\xcc" * 18 and page[23 * 32 + 11:24 * 32] == b"\xcc" * 21
    assert len(page) == 4096


def test_kernel_syscall_is_a_hypercall_with_its_result_in_rax(dom):
    run_kernel(dom, f"mov rdi, 0; mov rsi, 0x1234; {hypercall(25)}; mov rbx, rax; "
                    f"{hypercall(99)}")
    assert reg(dom, FS_BASE) == 0x1234
    assert reg(dom, RAX) == ENOSYS
    assert dom.machine.exits[Exit.HYPERCALL] == 2
    assert dom.lines[0] == "hypercall set_segment_base(0x0, 0x1234, 0x0, 0x0, 0x0) = 0x0"
    assert dom.machine.stop is None


def test_a_hypercall_takes_its_five_arguments_in_the_abis_registers(dom):
    """RDI, RSI, RDX, R10, R8 in that order (XEN-ABI64.md §1.2), however they lie in
    the CPU's state: the refusal's trace prints them as the handler received them."""
    run_kernel(dom, "mov rdi, 7; mov rsi, 0x11; mov rdx, 0x22; mov r10, 0x33; "
                    f"mov r8, 0x44; mov r9, 0x55; {hypercall(25)}")
    assert reg(dom, RAX) == EINVAL
    assert dom.lines[0].startswith("hypercall set_segment_base(0x7, 0x11, 0x22, 0x33, 0x44): "
                                   "-EINVAL")


def test_the_hypercall_registers_are_read_in_one_unpack_in_state_order():
    """IN_STATE_ORDER is the number and the ABI's arguments, in the order of QEMU's
    regs[] slots, so the reader is the bare unpack (machine/cpu.py register_reader)."""
    assert set(IN_STATE_ORDER) == {"rax", *HYPERCALL_ARGUMENT_REGISTERS[64]}
    slots = [SLOT_ORDER_64.index(getattr(X, f"UC_X86_REG_{name.upper()}"))
             for name in IN_STATE_ORDER]
    assert slots == sorted(slots)
    assert HYPERCALL_ARGUMENT_REGISTERS[64] == ("rdi", "rsi", "rdx", "r10", "r8")


@pytest.mark.parametrize("number", [17, 25])
def test_an_event_flagged_on_return_is_delivered_after_a_quiet_hypercall_too(dom, number):
    """xen_version is QUIET (no timer can be due) and set_segment_base is not: both
    return through the event check, which a flag the guest set must not miss."""
    dom.vcpu.long_mode.callbacks[CallbackType.event] = Callback64(HANDLER, False)
    dom.events.pending = True
    dom.upcall_pending = 1
    code = assemble(f"mov rdi, 0; mov rsi, 0; {hypercall(number)}", KERNEL_CODE, 64)
    dom.memory.write_phys(KERNEL_CODE, code)
    dom.memory.write_phys(HANDLER, b"\x90")
    dom.enter(KERNEL_CODE, KERNEL_STACK)
    dom.run(HANDLER)
    assert reg(dom, RIP) == HANDLER and dom.machine.exits[Exit.UPCALL] == 1


def test_no_upcall_while_evtchn_upcall_pending_is_clear(dom):
    """The callback registered, events unmasked and a word selected, but the flag
    clear (Xen's test_guest_events reads evtchn_upcall_pending): the hypercall returns
    to the instruction after the page's call."""
    dom.vcpu.long_mode.callbacks[CallbackType.event] = Callback64(HANDLER, False)
    dom.events.pending = True
    run_kernel(dom, f"mov rdi, 0; mov rsi, 0; {hypercall(17)}; mov rbx, 5")
    assert dom.machine.exits[Exit.UPCALL] == 0 and dom.machine.stop is None


# -- §1.7 set_segment_base --------------------------------------------------------------
def test_set_segment_base_sets_the_kernel_and_the_user_gs(dom):
    run_kernel(dom, f"mov rdi, 2; mov rsi, 0x7000; {hypercall(25)}; "
                    f"mov rdi, 1; mov rsi, 0x5000; {hypercall(25)}")
    state = dom.vcpu.long_mode
    assert reg(dom, GS_BASE) == 0x7000
    assert state.gs_base_user(dom.machine.cpu) == 0x5000
    state.toggle(dom.machine.cpu, dom.pagetables.load_cr3)
    assert (reg(dom, GS_BASE), reg(dom, CR3)) == (0x5000, USER_L4)
    state.toggle(dom.machine.cpu, dom.pagetables.load_cr3)
    assert (reg(dom, GS_BASE), reg(dom, CR3)) == (0x7000, KERNEL_L4)


@pytest.mark.parametrize("which, base", [(0, 0x0000_8000_0000_0000), (2, 1 << 63), (4, 0)])
def test_set_segment_base_refuses_non_canonical_bases_and_unknown_segments(dom, which, base):
    run_kernel(dom, f"mov rdi, {which}; mov rsi, {base}; {hypercall(25)}")
    assert reg(dom, RAX) == EINVAL
    assert reg(dom, FS_BASE) == 0 and reg(dom, GS_BASE) == 0


def test_set_segment_base_gs_user_sel_takes_the_descriptors_base(dom):
    run_kernel(dom, f"mov rdi, 2; mov rsi, 0x7000; {hypercall(25)}; "
                    f"mov rdi, 3; mov rsi, 0xe02b; {hypercall(25)}")
    assert reg(dom, GS_BASE) == 0x7000  # the kernel's stays active
    assert dom.vcpu.long_mode.gs_base_user(dom.machine.cpu) == 0  # flat: base 0


# -- §1.3 HYPERVISOR_iret ---------------------------------------------------------------
def iret_to_user(flags: int, rflags: int = 0x202, rax: int = 0x77) -> str:
    return (f"mov rax, {rax}; push 0xe02b; push {USER_STACK}; push {rflags}; push 0xe033; "
            f"push {USER_CODE}; push {flags}; mov rcx, 0x1111; mov r11, 0x2222; "
            f"mov rax, {IRET}; mov rbx, rax; mov rax, {rax}; jmp rbx")


def test_iret_to_user_mode_toggles_cr3_and_gs_and_restores_rax(dom):
    dom.memory.write_phys(USER_CODE, b"\x90")
    run_kernel(dom, f"mov rdi, 2; mov rsi, 0x7000; {hypercall(25)}; "
                    f"mov rdi, 1; mov rsi, 0x5000; {hypercall(25)}")
    code = assemble(iret_to_user(0), KERNEL_CODE + 0x100, 64)
    dom.memory.write_phys(KERNEL_CODE + 0x100, code)
    dom.machine.cpu.write(RIP, KERNEL_CODE + 0x100)
    dom.run(USER_CODE)
    assert reg(dom, RIP) == USER_CODE
    assert (reg(dom, CR3), reg(dom, GS_BASE)) == (USER_L4, 0x5000)
    assert not dom.vcpu.long_mode.kernel_mode
    assert (reg(dom, RSP), reg(dom, RAX)) == (USER_STACK, 0x77)
    assert (reg(dom, RCX), reg(dom, R11)) == (0x1111, 0x2222)  # without VGCF_in_syscall
    assert dom.upcall_mask == 0


def test_iret_in_syscall_form_loads_rcx_and_r11_as_sysret_and_masks_events_from_if(dom):
    run_kernel(dom, "nop")
    code = assemble(iret_to_user(VGCF_IN_SYSCALL, rflags=0x3002), KERNEL_CODE + 0x100, 64)
    dom.memory.write_phys(KERNEL_CODE + 0x100, code)
    dom.memory.write_phys(USER_CODE, b"\x90")
    dom.machine.cpu.write(RIP, KERNEL_CODE + 0x100)
    dom.run(USER_CODE)
    rflags = 0x202  # IOPL dropped, IF forced, bit 1 set
    assert (reg(dom, RCX), reg(dom, R11)) == (USER_CODE, rflags)
    assert reg(dom, RFLAGS) & 0x3202 == rflags
    assert dom.upcall_mask == 1  # the frame's IF was clear


def test_iret_to_user_mode_without_a_user_l4_crashes_the_domain(dom):
    dom.pagetables.user_base_mfn = 0
    run_kernel(dom, iret_to_user(0))
    assert "no user page tables" in dom.machine.stop.reason
    assert reg(dom, CR3) == KERNEL_L4


# -- §1.4 user system calls ---------------------------------------------------------------
def test_user_syscall_bounces_to_the_syscall_callback_on_kernel_sp(dom):
    state = dom.vcpu.long_mode
    state.callbacks[CallbackType.syscall] = Callback64(HANDLER, True)
    dom.machine.cpu.write(GS_BASE, 0x7000)  # the kernel's, active
    state.inactive_gs_base = 0x5000  # the user's
    after = run_user(dom, "mov rcx, 0x1111; std; syscall")
    assert reg(dom, RIP) == HANDLER
    assert state.kernel_mode and reg(dom, CR3) == KERNEL_L4 and reg(dom, GS_BASE) == 0x7000
    assert state.gs_base_user(dom.machine.cpu) == 0x5000
    top = KERNEL_STACK - 56
    assert reg(dom, RSP) == top
    rcx, r11, rip, cs, rflags, rsp, ss = dom.qwords(top, 7)
    assert (rcx, rip, cs, rsp, ss) == (after, after, 0xE033, USER_STACK, 0xE02B)
    assert r11 == rflags and rflags & 0x600 == 0x600  # DF as the user left it, IF shown
    assert reg(dom, RFLAGS) & 0x400 == 0  # DF cleared for the callback
    assert dom.upcall_mask == 1  # CALLBACKF_mask_events
    assert dom.machine.exits[Exit.SYSCALL] == 1


@pytest.mark.parametrize("rsp0", [0x3E0000, 0x3D0000])
def test_a_patched_kernels_bounce_from_user_mode_starts_at_its_tss_rsp0(dom, rsp0):
    """A kernel pvtool patched rewrites RSP0 in its TSS at each context switch, with a
    plain store, and its glue records the TSS ltr loaded in vcpu_regs: the bounce
    starts there, not at stack_switch's kernel_sp (docs/ABI.md, "The kernel stack
    from the TSS")."""
    regs, tss = KERNEL_CODE + 0x2000, KERNEL_CODE + 0x3000
    dom.regs_block = regs
    dom.memory.write_phys(regs + VCPU_REGS_64.offset("tss_base"), struct.pack("<Q", tss))
    dom.memory.write_phys(tss + 4, struct.pack("<Q", rsp0))
    state = dom.vcpu.long_mode
    state.callbacks[CallbackType.syscall] = Callback64(HANDLER, True)
    after = run_user(dom, "syscall")
    assert reg(dom, RIP) == HANDLER and state.kernel_mode
    assert reg(dom, RSP) == rsp0 - 56
    assert dom.qwords(rsp0 - 56, 7)[2] == after


def test_a_patched_kernel_before_its_ltr_bounces_on_kernel_sp(dom):
    dom.regs_block = KERNEL_CODE + 0x2000  # tss_base still 0
    dom.vcpu.long_mode.callbacks[CallbackType.syscall] = Callback64(HANDLER, True)
    run_user(dom, "syscall")
    assert reg(dom, RSP) == KERNEL_STACK - 56


def test_user_syscall_round_trip_through_hypervisor_iret(dom):
    """A user's syscall, the kernel's entry (pop rcx, r11; VGCF_in_syscall iret),
    and back after the syscall in user mode on the user L4."""
    state = dom.vcpu.long_mode
    state.callbacks[CallbackType.syscall] = Callback64(HANDLER, False)
    entry = assemble(f"pop rcx; pop r11; push {VGCF_IN_SYSCALL}; mov rax, {IRET}; "
                     "push rax; mov rax, 42; ret", HANDLER, 64)
    code = assemble("mov eax, 1; syscall", USER_CODE, 64)
    dom.memory.write_phys(USER_CODE, code + b"\x90")
    dom.memory.write_phys(HANDLER, entry)
    dom.enter_user(USER_CODE, USER_STACK)
    dom.run(USER_CODE + len(code))
    assert dom.machine.stop is None, dom.machine.stop
    assert reg(dom, RIP) == USER_CODE + len(code)
    assert not state.kernel_mode and reg(dom, CR3) == USER_L4
    assert reg(dom, RSP) == USER_STACK


def test_user_syscall_without_a_callback_is_ud_at_the_syscall(dom):
    dom.vcpu.long_mode.trap_table[6] = TrapInfo64(6, 0, False, HANDLER)
    after = run_user(dom, "syscall")
    rcx, r11, rip, cs = dom.qwords(KERNEL_STACK - 56, 4)
    assert rip == after - 2 and cs == 0xE033
    assert reg(dom, RIP) == HANDLER


def test_sysenter_frame_has_no_return_address(dom):
    dom.vcpu.long_mode.callbacks[CallbackType.sysenter] = Callback64(HANDLER, False)
    run_user(dom, "sysenter")
    rcx, r11, rip, cs, rflags, rsp, ss = dom.qwords(KERNEL_STACK - 56, 7)
    assert (rip, cs, rsp, ss) == (0, 3, 0, 0xE02B) and rflags & 0x200
    assert reg(dom, RIP) == HANDLER


def test_int80_goes_straight_to_its_handler_from_user_mode(dom):
    dom.vcpu.long_mode.trap_table[0x80] = TrapInfo64(0x80, 3, True, HANDLER)
    after = run_user(dom, "int 0x80")
    assert dom.qwords(KERNEL_STACK - 56, 3)[2] == after
    assert dom.upcall_mask == 1


def test_int80_without_a_handler_is_gp_with_its_idt_error_code(dom):
    dom.vcpu.long_mode.trap_table[13] = TrapInfo64(13, 0, False, HANDLER)
    run_user(dom, "int 0x80")
    rcx, r11, error, rip = dom.qwords(KERNEL_STACK - 64, 4)
    assert (error, rip) == (0x80 << 3 | 2, USER_CODE)


# -- §1.5 exceptions and int n --------------------------------------------------------------
@pytest.mark.parametrize("dpl, user, delivered", [
    (3, True, True), (1, True, False), (1, False, True), (0, False, False)])
def test_int_n_is_delivered_only_as_its_dpl_allows(dom, dpl, user, delivered):
    state = dom.vcpu.long_mode
    state.trap_table[0x40] = TrapInfo64(0x40, dpl, False, HANDLER)
    state.trap_table[13] = TrapInfo64(13, 0, False, HANDLER + 0x10)
    dom.memory.write_phys(HANDLER + 0x10, b"\x90")
    if user:
        dom.memory.write_phys(USER_CODE, b"\xcd\x40")
        dom.enter_user(USER_CODE, USER_STACK)
    else:
        dom.memory.write_phys(KERNEL_CODE, b"\xcd\x40")
        dom.enter(KERNEL_CODE, KERNEL_STACK)
    dom.run(HANDLER + 0x10, count=1)
    start = USER_CODE if user else KERNEL_CODE
    if delivered:
        assert reg(dom, RIP) == HANDLER
        assert dom.qwords(reg(dom, RSP), 3)[2] == start + 2
    else:
        assert reg(dom, RIP) == HANDLER + 0x10
        assert dom.qwords(reg(dom, RSP), 4)[2:] == (0x40 << 3 | 2, start)


def test_kernel_page_fault_clears_the_u_bit_and_keeps_the_stack(dom):
    dom.vcpu.long_mode.trap_table[14] = TrapInfo64(14, 0, True, HANDLER)
    dom.memory.write_phys(HANDLER, b"\x90")
    run_kernel(dom, "mov rsp, 0x3e0008; mov rax, [0x800000]", until=HANDLER)
    assert reg(dom, RIP) == HANDLER
    top = 0x3E0000 - 64
    rcx, r11, error, rip, cs, rflags, rsp, ss = dom.qwords(top, 8)
    assert error == 0  # not present, read, kernel mode: the CPU said 4 (CPL 3)
    assert cs == 0xE030 and rsp == 0x3E0008 and rip == KERNEL_CODE + 7
    assert dom.u64(VCPU_INFO + 16) == 0x800000
    assert dom.upcall_mask == 1 and dom.vcpu.long_mode.kernel_mode


def test_user_page_fault_keeps_the_u_bit_and_moves_to_kernel_mode(dom):
    dom.vcpu.long_mode.trap_table[14] = TrapInfo64(14, 0, False, HANDLER)
    run_user(dom, f"mov rax, [{KERNEL_CODE}]")
    rcx, r11, error, rip, cs = dom.qwords(KERNEL_STACK - 64, 5)
    assert (error, rip, cs) == (4, USER_CODE, 0xE033)
    assert reg(dom, CR3) == KERNEL_L4 and dom.u64(VCPU_INFO + 16) == KERNEL_CODE


def test_event_upcall_on_return_from_a_hypercall(dom):
    dom.vcpu.long_mode.callbacks[CallbackType.event] = Callback64(HANDLER, False)
    dom.events.pending = True
    dom.upcall_pending = 1  # evtchn_upcall_pending, as the event's sender sets it
    dom.memory.write_phys(HANDLER, b"\x90")
    code = assemble(f"mov rdi, 0; mov rsi, 0; {hypercall(25)}", KERNEL_CODE, 64)
    dom.memory.write_phys(KERNEL_CODE, code)
    dom.enter(KERNEL_CODE, KERNEL_STACK)
    dom.run(HANDLER)
    assert reg(dom, RIP) == HANDLER and dom.upcall_mask == 1
    rcx, r11, rip, cs = dom.qwords(reg(dom, RSP), 4)
    assert rip == HYPERCALL_PAGE + 25 * 32 + 10  # after the page's syscall
    assert cs == 0xE030  # mask 0 before delivery, kernel mode
    assert dom.machine.exits[Exit.UPCALL] == 1


# -- §1.6 emulation after #GP -----------------------------------------------------------------
def test_kernel_cr3_and_base_msrs_are_emulated(dom):
    run_kernel(dom, "mov rax, cr3; mov rbx, rax; mov ecx, 0xc0000102; mov eax, 0x9000; "
                    "xor edx, edx; wrmsr; mov ecx, 0xc0000080; rdmsr")
    assert reg(dom, RAX) == 0xD01
    assert dom.machine.cpu.read(dom.machine.cpu.width.gprs["rbx"]) == KERNEL_L4
    assert dom.vcpu.long_mode.gs_base_user(dom.machine.cpu) == 0x9000
    assert dom.machine.exits[Exit.EMULATED] == 3


@pytest.mark.parametrize("source", ["swapgs", "hlt",
                                    "mov ecx, 0xc0000100; mov edx, 0x8000; wrmsr"])
def test_what_xen_does_not_emulate_keeps_its_gp(dom, source):
    dom.vcpu.long_mode.trap_table[13] = TrapInfo64(13, 0, False, HANDLER)
    dom.memory.write_phys(HANDLER, b"\x90")
    code = assemble(source, KERNEL_CODE, 64)
    dom.memory.write_phys(KERNEL_CODE, code)
    dom.enter(KERNEL_CODE, KERNEL_STACK)
    dom.run(HANDLER)
    assert reg(dom, RIP) == HANDLER
    last = assemble(source.split(";")[-1], 0, 64)
    assert dom.qwords(reg(dom, RSP) + 16, 2) == (0, KERNEL_CODE + len(code) - len(last))


def test_fsgsbase_instructions_raise_ud_while_vcr4_fsgsbase_is_clear(dom):
    dom.vcpu.long_mode.trap_table[6] = TrapInfo64(6, 0, False, HANDLER)
    run_user(dom, "wrfsbase rax")
    assert dom.qwords(KERNEL_STACK - 56, 3)[2] == USER_CODE
    assert reg(dom, RIP) == HANDLER


def test_a_frame_in_xens_range_crashes_the_domain(dom):
    dom.vcpu.long_mode.trap_table[13] = TrapInfo64(13, 0, False, HANDLER)
    run_kernel(dom, "mov rsp, 0xffff800000001000; hlt")
    assert "hypervisor's range" in dom.machine.stop.reason


def test_iret_to_compat_code_in_kernel_mode_crashes_the_domain(dom):
    """FLAT_USER_CS32 with RPL 0 would leave the kernel running 32-bit code: pvtool
    runs compat code in user mode only (tests/hv/test_compat64.py)."""
    run_kernel(dom, iret_to_user(0).replace("push 0xe033", "push 0xe020"))
    assert "cs 0xe020" in dom.machine.stop.reason


@pytest.mark.parametrize("user", [False, True])
def test_forced_emulation_cpuid_answers_xens_signature_in_either_mode(dom, user):
    source = "mov rax, 0xffffffff40000000; ud2; .byte 0x78, 0x65, 0x6e; cpuid"
    if user:
        after = run_user(dom, source, until=USER_CODE + len(assemble(source, 0, 64)))
    else:
        run_kernel(dom, source)
        after = KERNEL_CODE + len(assemble(source, 0, 64))
    assert reg(dom, RIP) == after
    gprs = dom.machine.cpu.width.gprs
    assert struct.pack("<3I", *(reg(dom, gprs[r]) for r in ("rbx", "rcx", "rdx"))) \
        == b"XenVMMXenVMM"
    assert reg(dom, RAX) == 0x40000002  # zero-extended: the high half is gone
    assert dom.machine.exits[Exit.EMULATED] == 1


@pytest.mark.parametrize("iopl, user, allowed", [
    (1, False, True), (0, False, False), (1, True, False), (3, True, True)])
def test_port_io_needs_the_modes_io_privilege(dom, iopl, user, allowed):
    """iopl_ok: the kernel needs vIOPL 1, user mode 3 (UART LSR: 0x60, idle); without
    it Xen raises #GP(0) at the `in` (guest_io_okay), bounced to the kernel's handler.
    The run stops by count: an `in` ends Unicorn's check of the stop address."""
    dom.iopl = iopl
    dom.vcpu.long_mode.trap_table[13] = TrapInfo64(13, 0, False, HANDLER)
    source = "mov dx, 0x3fd; in al, dx; mov rbx, rax"
    code = USER_CODE if user else KERNEL_CODE
    if user:
        end = run_user(dom, source, until=0, count=3)
    else:
        run_kernel(dom, source, until=0, count=3)
        end = KERNEL_CODE + len(assemble(source, 0, 64))
    assert dom.machine.stop is None
    if allowed:
        assert reg(dom, RIP) == end
        assert reg(dom, RAX) & 0xFF == 0x60
    else:
        at_in = code + len(assemble("mov dx, 0x3fd", 0, 64))
        assert reg(dom, RIP) == HANDLER
        assert dom.qwords(reg(dom, RSP) + 16, 2) == (0, at_in)  # error code 0, the `in`


@pytest.mark.parametrize("gp_handler", [False, True])
def test_an_unknown_msr_reads_0_without_a_gp_handler_and_is_gp_with_one(dom, gp_handler):
    """read_msr's "faking RDMSR" for a kernel with no #GP handler (the 64-bit trap
    table's), Xen's #GP(0) for one that has it."""
    if gp_handler:
        dom.vcpu.long_mode.trap_table[13] = TrapInfo64(13, 0, False, HANDLER)
        run_kernel(dom, "mov ecx, 0x1234; rdmsr", until=HANDLER)
        assert reg(dom, RIP) == HANDLER
    else:
        run_kernel(dom, "mov ecx, 0x1234; mov eax, 5; rdmsr")
        assert reg(dom, RAX) == 0 and dom.machine.stop is None


class OneInterrupt:
    """An interrupt controller with VECTOR requested until it is acknowledged."""

    def __init__(self, vector: int):
        self.vector, self.waiting = vector, True

    def pending(self) -> bool:
        return self.waiting

    def acknowledge(self) -> int:
        self.waiting = False
        return self.vector


def test_a_device_interrupt_is_bounced_through_the_64_bit_trap_table(dom):
    """The local APIC timer's vector reaches the handler set_trap_table gave it, with
    the frame of an exception without an error code, events masked (TI_MASK_EVENTS)."""
    dom.vcpu.long_mode.trap_table[0xF0] = TrapInfo64(0xF0, 0, True, HANDLER)
    dom.memory.write_phys(KERNEL_CODE, b"\x90\x90")
    dom.memory.write_phys(HANDLER, b"\x90")
    dom.enter(KERNEL_CODE, KERNEL_STACK)
    dom.supervisor.take_interrupt(OneInterrupt(0xF0))
    assert reg(dom, RIP) == HANDLER and dom.upcall_mask == 1
    rcx, r11, rip, cs = dom.qwords(reg(dom, RSP), 4)
    assert (rip, cs) == (KERNEL_CODE, 0xE030)
    assert dom.machine.exits[Exit.IRQ_DROPPED] == 0
