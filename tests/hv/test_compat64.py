"""32-bit (compat) user code under a 64-bit PV kernel, on the 64-bit test domain
(tests/hv/longmode.py): HYPERVISOR_iret to FLAT_USER_CS32 runs the code as 32-bit
code, and `int $0x80`, `syscall` and faults from it reach the kernel as Xen
delivers them (XEN-ABI64.md §1.3-1.5: the frame keeps CS 0xe023; syscall goes to
the syscall32 callback), the kernel running 64-bit code again."""

import pytest

from pvtool.abi.xen import CallbackType
from pvtool.hv.vcpu64 import Callback64, TrapInfo64
from pvtool.machine.cpu import CR3, GPRS64_BY_NAME, RAX, RIP, RSP
from pvtool.x86.isa import assemble
from tests.hv.longmode import (
    HYPERCALL_PAGE,
    KERNEL_CODE,
    KERNEL_STACK,
    USER_CODE,
    USER_L4,
    USER_STACK,
    LongModeDomain,
    ready_domain,
)

FLAT_USER_CS32, FLAT_USER_SS = 0xE023, 0xE02B
IRET = HYPERCALL_PAGE + 23 * 32
HANDLER = KERNEL_CODE + 0x1000
RBX = GPRS64_BY_NAME["rbx"]
WIDE = 0x1122_3344_5566_7788  # a value only 64-bit code can load
# `inc eax; push eax; pop ebx`, then the entry: 0x40 is `inc eax` only in 32-bit
# code (in 64-bit code a REX prefix), and push/pop move ESP by 4.
USER32 = "mov eax, 41; inc eax; push eax; pop ebx"


@pytest.fixture
def dom() -> LongModeDomain:
    return ready_domain()


def reg(dom: LongModeDomain, which: int) -> int:
    return dom.machine.cpu.read(which)


def iret_to_compat(entry: int) -> str:
    """HYPERVISOR_iret's frame for 32-bit user code at ENTRY (flags 0: an iret)."""
    return (f"push {FLAT_USER_SS}; push {USER_STACK}; push 0x202; push {FLAT_USER_CS32}; "
            f"push {entry}; push 0; mov rax, {IRET}; jmp rax")


def start_compat(dom: LongModeDomain, user32: str, handler: str = "nop") -> int:
    """The kernel returns to USER32 (32-bit code) with HYPERVISOR_iret; HANDLER
    (64-bit code) is the kernel's entry. The address after USER32."""
    user = assemble(user32, USER_CODE, 32)
    dom.memory.write_phys(USER_CODE, user + b"\x90")
    dom.memory.write_phys(HANDLER, assemble(handler, HANDLER, 64) + b"\x90")
    kernel = assemble(iret_to_compat(USER_CODE), KERNEL_CODE, 64)
    dom.memory.write_phys(KERNEL_CODE, kernel)
    dom.enter(KERNEL_CODE, KERNEL_STACK)
    return USER_CODE + len(user)


def handler_end(handler: str) -> int:
    return HANDLER + len(assemble(handler, HANDLER, 64))


def test_iret_to_flat_user_cs32_runs_32_bit_code_in_user_mode(dom):
    after = start_compat(dom, USER32)
    dom.run(after)
    assert dom.machine.stop is None, dom.machine.stop
    assert reg(dom, RIP) == after
    assert (reg(dom, RAX), reg(dom, RBX)) == (42, 42)  # 0x40 ran as inc eax
    assert reg(dom, RSP) == USER_STACK  # push and pop: 4 bytes each, back where it was
    assert not dom.vcpu.long_mode.kernel_mode and reg(dom, CR3) == USER_L4


def test_int80_from_compat_code_reaches_the_64_bit_kernel_with_cs32_in_its_frame(dom):
    dom.vcpu.long_mode.trap_table[0x80] = TrapInfo64(0x80, 3, False, HANDLER)
    handler = f"mov rax, {WIDE:#x}"
    after = start_compat(dom, USER32 + "; int 0x80", handler)
    dom.run(handler_end(handler))
    assert dom.machine.stop is None, dom.machine.stop
    assert reg(dom, RAX) == WIDE  # the handler ran as 64-bit code
    rcx, r11, rip, cs, rflags, rsp, ss = dom.qwords(KERNEL_STACK - 56, 7)
    assert (rip, cs, rsp, ss) == (after, FLAT_USER_CS32, USER_STACK, FLAT_USER_SS)
    assert dom.vcpu.long_mode.kernel_mode


def test_syscall_from_compat_code_goes_to_the_syscall32_callback(dom):
    state = dom.vcpu.long_mode
    state.callbacks[CallbackType.syscall] = Callback64(HANDLER + 0x100, False)
    state.callbacks[CallbackType.syscall32] = Callback64(HANDLER, False)
    handler = f"mov rax, {WIDE:#x}"
    after = start_compat(dom, USER32 + "; syscall", handler)
    dom.run(handler_end(handler))
    assert reg(dom, RAX) == WIDE
    rcx, r11, rip, cs, rflags, rsp, ss = dom.qwords(KERNEL_STACK - 56, 7)
    assert (rcx, rip, cs) == (after, after, FLAT_USER_CS32)
    assert r11 == rflags


def test_a_round_trip_from_compat_code_through_the_kernel_and_back(dom):
    """int $0x80 from 32-bit code, the kernel's entry returns with HYPERVISOR_iret
    (the frame's CS 0xe023 unchanged), and the 32-bit code goes on after the int."""
    dom.vcpu.long_mode.trap_table[0x80] = TrapInfo64(0x80, 3, False, HANDLER)
    handler = f"pop rcx; pop r11; push 0; mov rbx, {IRET}; jmp rbx"
    after = start_compat(dom, "int 0x80; mov eax, 7; inc eax", handler)
    dom.run(after)
    assert dom.machine.stop is None, dom.machine.stop
    assert reg(dom, RIP) == after
    assert reg(dom, RAX) == 8  # the 32-bit code's inc eax
    assert not dom.vcpu.long_mode.kernel_mode


def test_a_fault_in_compat_code_is_bounced_to_the_64_bit_kernel(dom):
    dom.vcpu.long_mode.trap_table[14] = TrapInfo64(14, 0, False, HANDLER)
    handler = f"mov rax, {WIDE:#x}"
    start_compat(dom, "mov eax, [0x300000]", handler)  # not in the user's L4
    dom.run(handler_end(handler))
    assert reg(dom, RAX) == WIDE
    rcx, r11, error, rip, cs = dom.qwords(KERNEL_STACK - 64, 5)
    assert (rip, cs) == (USER_CODE, FLAT_USER_CS32)
    assert error & 4  # the U bit: the guest was in user mode


def test_sysenter_from_compat_code_reaches_the_64_bit_kernel(dom):
    dom.vcpu.long_mode.callbacks[CallbackType.sysenter] = Callback64(HANDLER, False)
    handler = f"mov rax, {WIDE:#x}"
    start_compat(dom, USER32 + "; sysenter", handler)
    dom.run(handler_end(handler))
    assert reg(dom, RAX) == WIDE
    rcx, r11, rip, cs, rflags, rsp, ss = dom.qwords(KERNEL_STACK - 56, 7)
    assert (rip, cs, rsp) == (0, 3, 0)  # sysenter_entry's frame, whatever the mode
