"""Xen's 64-bit bounce frame (XEN-ABI64.md §1.5, xen/arch/x86/x86_64/entry.S
create_bounce_frame): how a 64-bit PV kernel receives an exception, an event, a
system call of its user programs or a software interrupt.

The kernel runs at CPL 3, so no ring changes: the hypervisor writes the frame itself
and moves the registers. From user mode it first toggles to kernel mode (GS swap, the
kernel L4) and starts on kernel_sp; from kernel mode it stays on the interrupted stack
and clears the RPL of the saved CS, which is how the handler knows where the event hit.
A kernel pvtool patched keeps its kernel stack where the bare machine reads it, in its
TSS's RSP0, which it rewrites at every context switch with a plain store: for it the
stack is read there afresh (its glue records the TSS `ltr` loaded in vcpu_regs), as for
a patched 32-bit kernel (docs/ABI.md, "The kernel stack from the TSS").
Xen returns to the guest with SYSRET, which clobbers RCX and R11: so the frame begins
with them, the handler pops them, and what is left is a hardware iretq frame. A bounce
from compat (32-bit) user code also puts the CPU back on the 64-bit code segment.

The failsafe callback (load_segments below) has a frame of its own: Xen's
load_segments builds it when a vCPU coming onto the CPU cannot have its data selectors
back.
"""

import struct
from dataclasses import dataclass

from pvtool.abi.pvtool import VCPU_REGS_64
from pvtool.abi.xen import CallbackType, VmAssistType
from pvtool.hv.domain import PvDomain, VCpu
from pvtool.hv.errors import DomainCrash, HypercallError
from pvtool.hv.segments64 import DataSelectors, is_compat, leave_compat, load_data_segments
from pvtool.hv.vcpu64 import Vcpu64, in_hypervisor_range
from pvtool.machine.cpu import CS, R11, RCX, RFLAGS, RIP, RSP, SS, Cpu
from pvtool.x86.paging import is_canonical
from pvtool.x86.registers import (
    EFLAGS_AC,
    EFLAGS_IF,
    EFLAGS_IOPL,
    EFLAGS_NT,
    EFLAGS_RF,
    EFLAGS_TF,
    EFLAGS_VM,
)
from pvtool.x86.tss import TSS64_RSP0

FRAME_ALIGN = 16
IOPL_SHIFT = 12
GUARD = 64  # create_bounce_frame refuses a frame this close above Xen's range
# What the handler's RFLAGS loses on entry (entry.S: TF, VM, RF, NT; AC by SMAP rules).
HANDLER_CLEARS = EFLAGS_TF | EFLAGS_VM | EFLAGS_RF | EFLAGS_NT | EFLAGS_AC


@dataclass(frozen=True)
class Interrupted:
    """Where the guest was when the event hit: what the frame saves. `rip` is the
    return address (on a fault, the instruction; after a syscall, the next one)."""

    rip: int
    cs: int
    rflags: int
    rsp: int
    rcx: int
    r11: int
    ss: int


def interrupted_at(cpu: Cpu, rip: int, *, by_syscall: bool = False) -> Interrupted:
    """The CPU's state, returning to RIP. BY_SYSCALL: RCX and R11 are what the
    hardware's syscall would have put there (RIP and RFLAGS), not read."""
    rflags = cpu.read(RFLAGS)
    if by_syscall:
        rcx, r11 = rip, rflags
    else:
        rcx, r11 = cpu.read(RCX), cpu.read(R11)
    return Interrupted(rip, cpu.read(CS), rflags, cpu.read(RSP), rcx, r11, cpu.read(SS))


def bounce(dom: PvDomain, vcpu64: Vcpu64, handler: int, at: Interrupted, *,
           error_code: int | None = None, masks_events: bool = False,
           clears: int = 0) -> int:
    """Build the frame for HANDLER, move the guest's registers onto it, and return the
    handler's address: the caller resumes there (a RIP write, or a fast call's
    resume, which knows Unicorn's +2). The handler runs without the flags in CLEARS
    either. Undeliverable: DomainCrash."""
    if not handler:
        raise DomainCrash(f"a bounce at {at.rip:#x} to a handler at address 0")
    sp, cs = _to_kernel(dom, vcpu64, at)
    saved_mask = dom.upcall_mask
    flags = at.rflags & ~(EFLAGS_IF | EFLAGS_IOPL) | (0 if saved_mask else EFLAGS_IF)
    words = [at.rcx, at.r11]
    if error_code is not None:
        words.append(error_code & 0xFFFFFFFF)
    words += [at.rip, cs | saved_mask << 32, flags, at.rsp, at.ss & 0xFFFF]
    top = _push(dom, sp, words)
    _enter_handler(dom, handler, at, top, masks_events=masks_events, clears=clears)
    if dom.trace:
        dom.log(f"bounce frame at {top:#x} to {handler:#x} from {at.rip:#x}")
    return handler


def _to_kernel(dom: PvDomain, vcpu64: Vcpu64, at: Interrupted) -> tuple[int, int]:
    """Where the frame goes and the CS it saves: from kernel mode the interrupted
    stack, the CS's RPL cleared ("the event hit kernel mode"); from user mode
    kernel stack (kernel_stack), after the toggle to kernel mode (and to 64-bit code,
    from compat)."""
    cs = at.cs & 0xFFFF
    if vcpu64.kernel_mode:
        return at.rsp, cs & ~3
    cpu = dom.machine.cpu
    vcpu64.toggle(cpu, dom.pagetables.load_cr3)
    if is_compat(cpu.read(CS)):  # the CPU's: sysenter's frame names CS 3
        leave_compat(cpu)
    return kernel_stack(dom, vcpu64), cs


def _push(dom: PvDomain, sp: int, words: list[int]) -> int:
    """WORDS below SP aligned to 16, the first lowest; answer the new stack top."""
    frame = struct.pack(f"<{len(words)}Q", *(w & (1 << 64) - 1 for w in words))
    top = (sp & ~(FRAME_ALIGN - 1)) - len(frame)
    _write_frame(dom, top, frame)
    return top


def _enter_handler(dom: PvDomain, handler: int, at: Interrupted, top: int, *,
                   masks_events: bool, clears: int = 0) -> None:
    """The guest's registers for HANDLER on the frame at TOP, as Xen's SYSRET leaves
    them: RCX the handler, R11 its flags."""
    cpu = dom.machine.cpu
    if masks_events:
        dom.upcall_mask = 1
    cpu.write(RSP, top)
    new_flags = at.rflags & ~(HANDLER_CLEARS | clears) | EFLAGS_IF
    cpu.write(RFLAGS, new_flags)
    cpu.write(RCX, handler)  # SYSRET's: RCX is the return address, R11 the flags
    cpu.write(R11, new_flags)


def kernel_stack(dom: PvDomain, vcpu64: Vcpu64) -> int:
    """Where a bounce from user mode starts, read in kernel mode: a patched kernel's
    TSS RSP0 once its glue has recorded a TSS, else stack_switch's kernel_sp."""
    if dom.regs_block is None:
        return vcpu64.kernel_sp
    tss = _read_u64(dom, dom.regs_block + VCPU_REGS_64.offset("tss_base"), "vcpu_regs")
    return _read_u64(dom, tss + TSS64_RSP0, "TSS") if tss else vcpu64.kernel_sp


def _read_u64(dom: PvDomain, address: int, what: str) -> int:
    try:
        return struct.unpack("<Q", dom.copy_from_guest(address, 8))[0]
    except HypercallError:
        raise DomainCrash(f"the {what} at {address:#x} is not mapped") from None


def _write_frame(dom: PvDomain, address: int, frame: bytes) -> None:
    """Write the frame, or crash the domain as create_bounce_frame does when the
    stack is Xen's, non-canonical or not writable."""
    end = address + len(frame)
    if not (is_canonical(address) and is_canonical(end - 1)) \
            or in_hypervisor_range(address, len(frame) + GUARD):
        raise DomainCrash(f"a bounce frame at {address:#x}, in the hypervisor's range "
                          "or not canonical")
    try:
        dom.copy_to_guest(address, frame)
    except HypercallError:
        raise DomainCrash(f"the bounce frame at {address:#x} cannot be written "
                          "(kernel stack)", address) from None


def load_segments(dom: PvDomain, vcpu: VCpu) -> None:
    """Xen's load_segments for VCPU, just put on the CPU (hv/scheduler.py): its data
    selectors reloaded, and if one cannot be, the failsafe callback."""
    selectors = load_data_segments(dom.machine.cpu, dom.gdt, vcpu.long_mode)
    if selectors.all_loaded:
        return
    try:
        failsafe(dom, vcpu.long_mode, selectors)
    except DomainCrash as crash:
        dom.crash(crash.reason, crash.address)


def failsafe(dom: PvDomain, vcpu64: Vcpu64, selectors: DataSelectors) -> None:
    """Bounce to the failsafe callback with load_segments' frame: RCX, R11, the four
    selectors as they were, RIP, CS | mask << 32, RFLAGS, RSP, SS. RFLAGS.IF is the
    event mask's opposite and IOPL the virtual one under architectural_iopl; events
    are masked if the callback asked (VGCF_failsafe_disables_events). Xen does not
    check the address: with none registered the vCPU goes to 0, and so here."""
    cpu = dom.machine.cpu
    at = interrupted_at(cpu, cpu.read(RIP))
    sp, cs = _to_kernel(dom, vcpu64, at)
    saved_mask = dom.upcall_mask
    flags = at.rflags & ~(EFLAGS_IF | EFLAGS_IOPL) | (0 if saved_mask else EFLAGS_IF)
    if VmAssistType.architectural_iopl in dom.vm_assists:
        flags |= dom.iopl << IOPL_SHIFT
    callback = vcpu64.callbacks.get(CallbackType.failsafe)
    handler = callback.address if callback else 0
    top = _push(dom, sp, [at.rcx, at.r11, selectors.ds, selectors.es, selectors.fs,
                          selectors.gs, at.rip, cs | saved_mask << 32, flags, at.rsp,
                          at.ss & 0xFFFF])
    _enter_handler(dom, handler, at, top, masks_events=bool(callback and callback.masks_events),
                   clears=EFLAGS_IOPL)
    cpu.write(RIP, handler)
    if dom.trace:
        dom.log(f"failsafe callback to {handler:#x} from {at.rip:#x}: data selectors "
                f"{selectors.ds:#x} {selectors.es:#x} {selectors.fs:#x} {selectors.gs:#x}")


def resume_at(cpu: Cpu, handler: int) -> None:
    """Resume at HANDLER from an interruption (the INTR or invalid-opcode hook)."""
    cpu.write(RIP, handler)
