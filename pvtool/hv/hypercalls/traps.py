"""Traps and callbacks: the trap table, the kernel stack, HYPERVISOR_iret."""

from collections.abc import Iterator

from pvtool.abi.layouts import CALLBACK_REGISTER, IRET_FRAME_32, TRAP_INFO, Layout
from pvtool.abi.xen import (
    CALLBACKF_MASK_EVENTS,
    GUEST_KERNEL_RPL,
    TI_DPL_MASK,
    TI_MASK_EVENTS,
    CallbackOp,
    CallbackType,
    Errno,
)
from pvtool.hv.domain import PvDomain, TrapInfo, VCpu, fix_selector_rpl
from pvtool.hv.errors import DomainCrash, HypercallError
from pvtool.hv.hypercalls.common import NO_RESULT
from pvtool.machine.cpu import CS, EAX, EFLAGS, EIP, ESP
from pvtool.x86.registers import EFLAGS_IF, EFLAGS_RF

MAX_TRAPS = 256
RING1_FRAME_SIZE = 16  # EAX, EIP, CS, EFLAGS: no ESP and SS when staying in ring 1
# What HYPERVISOR_iret may restore of EFLAGS: the arithmetic and control flags, never
# IOPL, VM or the real IF (which stays set; the virtual IF is the upcall mask).
IRET_EFLAGS_MASK = 0x00240DD5  # CF PF AF ZF SF TF DF OF, AC, ID


def set_trap_table(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    """Read trap_info entries until one with address 0 (or 256 of them)."""
    table: dict[int, TrapInfo] = {}
    ptr = args[0]
    if ptr == 0:
        dom.trap_table.clear()
        return 0
    for entry in trap_entries(dom, ptr, TRAP_INFO):
        flags = entry["flags"]
        table[entry["vector"]] = TrapInfo(
            vector=entry["vector"], dpl=flags & TI_DPL_MASK,
            masks_events=bool(flags & TI_MASK_EVENTS),
            cs=fix_selector_rpl(entry["cs"]), address=entry["address"])
    dom.trap_table.update(table)
    return 0


def trap_entries(dom: PvDomain, ptr: int, layout: Layout) -> Iterator[dict]:
    """The trap_info entries (of the guest width's LAYOUT) at PTR, up to the one
    with address 0; -EINVAL if 256 entries go by without it."""
    for index in range(MAX_TRAPS + 1):
        entry = layout.unpack(dom.copy_from_guest(ptr + index * layout.size, layout.size))
        if entry["address"] == 0:
            return
        yield entry
    raise HypercallError(Errno.EINVAL, "trap table has no terminating entry")


def stack_switch(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    """The kernel stack to switch to on a trap from ring 3."""
    dom.kernel_ss, dom.kernel_sp = fix_selector_rpl(args[0]), args[1]
    return 0


def set_callbacks(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    event_cs, event_eip, failsafe_cs, failsafe_eip = args[:4]
    dom.callbacks[CallbackType.event] = (fix_selector_rpl(event_cs), event_eip, 0)
    dom.callbacks[CallbackType.failsafe] = (fix_selector_rpl(failsafe_cs), failsafe_eip, 0)
    return 0


def callback_op(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    cmd, arg = args[0], args[1]
    if cmd != CallbackOp.register:
        raise HypercallError(Errno.ENOSYS, f"callback_op command {cmd}")
    reg = CALLBACK_REGISTER.unpack(dom.copy_from_guest(arg, CALLBACK_REGISTER.size))
    try:
        kind = CallbackType(reg["type"])
    except ValueError:
        raise HypercallError(Errno.EINVAL, f"callback type {reg['type']}") from None
    dom.callbacks[kind] = (fix_selector_rpl(reg["cs"]), reg["eip"],
                           reg["flags"] & CALLBACKF_MASK_EVENTS)
    return 0


def iret(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> object:
    """Return from a bounce: the stack holds {EAX, EIP, CS, EFLAGS, [ESP, SS]}; the
    virtual IF (upcall mask) comes from EFLAGS.IF. Ring 1 stays on this stack (16
    bytes popped); ring 3 continues on the frame's ESP and SS."""
    head = IRET_FRAME_32.unpack(_iret_frame(dom, vcpu.esp, RING1_FRAME_SIZE)
                                .ljust(IRET_FRAME_32.size, b"\0"))
    cs = head["cs"] & 0xFFFF
    ring = cs & 3
    if ring < GUEST_KERNEL_RPL:
        raise DomainCrash(f"HYPERVISOR_iret to ring {ring} (cs {cs:#x})")
    if ring == 2:
        raise DomainCrash(f"HYPERVISOR_iret to ring 2 (cs {cs:#x})")
    if not dom.gdt.is_code_selector(cs, ring):
        raise DomainCrash(f"HYPERVISOR_iret to cs {cs:#x}, not a ring-{ring} code segment")
    frame = IRET_FRAME_32.unpack(_iret_frame(dom, vcpu.esp, IRET_FRAME_32.size)) \
        if ring == 3 else head
    if ring == 3 and not dom.gdt.is_stack_selector(frame["ss"] & 0xFFFF, 3):
        raise DomainCrash(f"HYPERVISOR_iret to ring 3 with ss {frame['ss'] & 0xFFFF:#x}, "
                          "not a ring-3 data segment")
    dom.upcall_mask = 0 if head["eflags"] & EFLAGS_IF else 1
    if head["eflags"] & EFLAGS_RF and dom.breakpoints is not None:
        dom.breakpoints.resume_at = head["eip"]  # its instruction breakpoint held off once
    eflags = vcpu.eflags & ~IRET_EFLAGS_MASK | head["eflags"] & IRET_EFLAGS_MASK | EFLAGS_IF
    vcpu.set(EAX, head["eax"])
    if ring == 3:
        vcpu.enter_ring(3, cs=cs, eip=frame["eip"], ss=frame["ss"] & 0xFFFF,
                        esp=frame["esp"], eflags=eflags)
        return NO_RESULT
    vcpu.set(ESP, vcpu.esp + RING1_FRAME_SIZE)
    vcpu.set(EFLAGS, eflags)
    if cs != vcpu.cs:
        vcpu.set(CS, cs)
    vcpu.set(EIP, head["eip"])
    return NO_RESULT


def _iret_frame(dom: PvDomain, esp: int, size: int) -> bytes:
    """The frame HYPERVISOR_iret pops; one it cannot read crashes the domain, as
    Xen's do_iret does (there is no caller left to return an error to)."""
    try:
        return dom.copy_from_guest(esp, size)
    except HypercallError:
        raise DomainCrash(f"HYPERVISOR_iret with its frame at {esp:#010x} unreadable") \
            from None
