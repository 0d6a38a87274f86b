"""The hypercalls whose 64-bit form differs from the 32-bit one: the trap table and
callbacks (their 64-bit layouts and rules), the kernel stack, HYPERVISOR_iret's
iret_context and the kernel/user toggle, and set_segment_base, which only exists for
64-bit guests. XEN-ABI64.md §1.3, §1.5, §1.7; xen/arch/x86/pv/callback.c, iret.c,
misc-hypercalls.c.
"""

from pvtool.abi.layouts import CALLBACK_UNREGISTER
from pvtool.abi.xen import (
    CALLBACKF_MASK_EVENTS,
    TI_DPL_MASK,
    TI_MASK_EVENTS,
    CallbackOp,
    CallbackType,
    Errno,
    VmAssistType,
)
from pvtool.abi.xen64 import (
    CALLBACK_REGISTER_64,
    FLAT_KERNEL_CS64,
    IRET_CONTEXT_64,
    TRAP_INFO_64,
    VGCF_IN_SYSCALL,
    SegmentBase,
)
from pvtool.hv.domain import PvDomain, VCpu
from pvtool.hv.errors import DomainCrash, HypercallError
from pvtool.hv.hypercalls.common import NO_RESULT
from pvtool.hv.hypercalls.traps import trap_entries
from pvtool.hv.segments64 import enter_compat, is_compat
from pvtool.hv.vcpu64 import Callback64, TrapInfo64, Vcpu64
from pvtool.machine.cpu import FS_BASE, GS, GS_BASE, R11, RAX, RCX, RFLAGS, RSP
from pvtool.x86.paging import is_canonical
from pvtool.x86.registers import EFLAGS_IF, EFLAGS_IOPL, EFLAGS_RESERVED, EFLAGS_VM

RFLAGS_ALL = 0x003F7FD5  # X86_EFLAGS_ALL (x86-defns.h): CF through ID
USER_RPL = 3


def long_mode(vcpu: VCpu) -> Vcpu64:
    """The vCPU's 64-bit state; a 32-bit vCPU has none (-ENOSYS, as Xen answers a
    32-bit guest's set_segment_base)."""
    state = vcpu.long_mode
    if state is None:
        raise HypercallError(Errno.ENOSYS, "a 64-bit PV hypercall from a 32-bit vCPU")
    return state


def set_trap_table(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    """Copy trap_info entries by vector until one has address 0; a NULL handle clears
    the table; a non-canonical handler gives -EINVAL, the entries before it kept."""
    state = long_mode(vcpu)
    ptr = args[0]
    if ptr == 0:
        state.trap_table.clear()
        return 0
    for entry in trap_entries(dom, ptr, TRAP_INFO_64):
        address = entry["address"]
        if not is_canonical(address):
            raise HypercallError(Errno.EINVAL, f"trap handler {address:#x} not canonical")
        flags = entry["flags"]
        state.trap_table[entry["vector"]] = TrapInfo64(
            entry["vector"], flags & TI_DPL_MASK, bool(flags & TI_MASK_EVENTS), address)
    return 0


def stack_switch(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    """The kernel stack a bounce from user mode starts on (kernel_sp; SS is flat)."""
    long_mode(vcpu).kernel_sp = args[1]
    return 0


def set_callbacks(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    """The event, failsafe and syscall callbacks at once, without flags. Xen ignores
    what register_guest_callback answers: a non-canonical address is just not set."""
    state = long_mode(vcpu)
    for kind, address in zip((CallbackType.event, CallbackType.failsafe,
                              CallbackType.syscall), args[:3], strict=True):
        if is_canonical(address):
            state.callbacks[kind] = Callback64(address, False)
    return 0


def callback_op(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    state = long_mode(vcpu)
    cmd, arg = args[0], args[1]
    if cmd == CallbackOp.register:
        reg = CALLBACK_REGISTER_64.unpack(dom.copy_from_guest(arg, CALLBACK_REGISTER_64.size))
        return _register(state, reg["type"], reg["flags"], reg["address"])
    if cmd == CallbackOp.unregister:
        kind = CALLBACK_UNREGISTER.unpack(dom.copy_from_guest(arg, CALLBACK_UNREGISTER.size))
        return _unregister(state, kind["type"])
    raise HypercallError(Errno.ENOSYS, f"callback_op command {cmd}")


def _register(state: Vcpu64, kind: int, flags: int, address: int) -> int:
    if not is_canonical(address):
        raise HypercallError(Errno.EINVAL, f"callback address {address:#x} not canonical")
    try:
        kind = CallbackType(kind)
    except ValueError:
        raise HypercallError(Errno.ENOSYS, f"callback type {kind}") from None
    state.callbacks[kind] = Callback64(address, bool(flags & CALLBACKF_MASK_EVENTS))
    return 0


def _unregister(state: Vcpu64, kind: int) -> int:
    """Only the NMI callback can be unregistered (unregister_guest_callback)."""
    if kind != CallbackType.nmi:
        raise HypercallError(Errno.EINVAL, f"callback type {kind} cannot be unregistered")
    state.callbacks.pop(CallbackType.nmi, None)
    return 0


def iret(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> object:
    """Return from a bounce (do_iret): pop the 72-byte iret_context at RSP, toggle to
    user mode if its CS has RPL 3 (Xen's flat CS, or a 64-bit user code segment of
    the guest's GDT, which the vCPU runs on Xen's flat CS: the same 64-bit ring-3
    code), take the event mask from its IF, and go on at its RIP on its RSP with its
    RAX; FLAT_USER_CS32 runs it as 32-bit code. Without VGCF_in_syscall RCX and R11
    come back too;
    with it Xen returns by SYSRET, which loads them with RIP and RFLAGS."""
    state = long_mode(vcpu)
    rsp = vcpu.get(RSP)
    try:
        ctx = IRET_CONTEXT_64.unpack(dom.copy_from_guest(rsp, IRET_CONTEXT_64.size))
    except HypercallError:
        raise DomainCrash(f"HYPERVISOR_iret with its frame at {rsp:#x} unreadable") from None
    cpu = dom.machine.cpu
    cs = ctx["cs"] & 0xFFFF
    compat = is_compat(cs)
    if (cs | USER_RPL) != FLAT_KERNEL_CS64 and not compat and not dom.gdt.is_user_code64(cs):
        raise DomainCrash(f"HYPERVISOR_iret to cs {cs:#x}: pvtool returns to 64-bit code "
                          "(FLAT_KERNEL_CS64 or a 64-bit user code segment) or to "
                          "FLAT_USER_CS32 only")
    if ctx["cs"] & 3 == USER_RPL:
        state.toggle(cpu, dom.pagetables.load_cr3)  # no user L4: a crash
    if compat:  # 32-bit user code (hv/segments64.py)
        enter_compat(cpu)
    if VmAssistType.architectural_iopl in dom.vm_assists:
        dom.iopl = (ctx["rflags"] & EFLAGS_IOPL) >> 12
    rflags = ctx["rflags"] & RFLAGS_ALL & ~(EFLAGS_IOPL | EFLAGS_VM) \
        | EFLAGS_IF | EFLAGS_RESERVED
    in_syscall = ctx["flags"] & VGCF_IN_SYSCALL
    vcpu.set(RCX, ctx["rip"] if in_syscall else ctx["rcx"])
    vcpu.set(R11, rflags if in_syscall else ctx["r11"])
    vcpu.set(RSP, ctx["rsp"])
    vcpu.set(RFLAGS, rflags)
    vcpu.set(RAX, ctx["rax"])
    dom.upcall_mask = 0 if ctx["rflags"] & EFLAGS_IF else 1
    state.resume = ctx["rip"]
    return NO_RESULT


def set_segment_base(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    """FS, the kernel's and the user's GS base, or the user's GS from a selector
    (do_set_segment_base, §1.7). The call is made in kernel mode, so the active GS
    base is the kernel's and the user's is the inactive one."""
    state = long_mode(vcpu)
    which, base = args[0], args[1]
    cpu = dom.machine.cpu
    if which == SegmentBase.gs_user_sel:
        state.set_gs_base_user(cpu, _user_gs_from_selector(dom, base & 0xFFFF))
        return 0
    if which not in (SegmentBase.fs, SegmentBase.gs_user, SegmentBase.gs_kernel):
        raise HypercallError(Errno.EINVAL, f"set_segment_base of {which}")
    if not is_canonical(base):
        raise HypercallError(Errno.EINVAL, f"segment base {base:#x} not canonical")
    if which == SegmentBase.fs:
        cpu.write(FS_BASE, base)
    elif which == SegmentBase.gs_kernel:
        cpu.write(GS_BASE, base)
    else:
        state.set_gs_base_user(cpu, base)
    return 0


def _user_gs_from_selector(dom: PvDomain, selector: int) -> int:
    """Load %gs with SELECTOR (its RPL forced to 3 when it is not null) and answer the
    base it brought, keeping the kernel's GS base active: Xen does it between two
    swapgs. A selector the CPU refuses loads the null selector instead, as Xen's
    fixup does, and the user base becomes 0."""
    cpu = dom.machine.cpu
    if selector > 3:
        selector |= USER_RPL
    kernel_base = cpu.read(GS_BASE)
    cpu.write(GS, selector)
    if cpu.read(GS) != selector:  # the CPU's descriptor checks refused it
        cpu.write(GS, 0)
    user_base = cpu.read(GS_BASE)
    cpu.write(GS_BASE, kernel_base)
    return user_base
