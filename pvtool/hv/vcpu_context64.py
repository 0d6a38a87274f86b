"""VCPUOP_initialise for a 64-bit vCPU: its first state from the x86-64
vcpu_guest_context (abi/xen64.py), checked as Xen's arch_set_info_guest
(xen/arch/x86/domain.c) checks a 64-bit PV guest's, and kept until the scheduler
first puts the vCPU on the CPU.

Xen answers -EFAULT for a context it cannot read, -EEXIST for an initialised vCPU,
and -EINVAL for: a non-canonical RIP, RSP, kernel_sp, segment base, callback or
trap handler; an LDT base in Xen's range or not page-aligned, or more than 8,192
entries; a vCPU to start in user mode (no VGCF_in_kernel) without a user L4 in
ctrlreg[1]; a kernel (ctrlreg[3]) or user L4 that is not a table the domain may use.
It then takes the registers (IF forced on, IOPL made the vCPU's virtual IOPL), the
trap table, the event, failsafe and syscall callbacks (the last two masking events
as the flags VGCF_failsafe_disables_events and VGCF_syscall_disables_events say),
kernel_sp, the mode, both L4s and the three segment bases (a non-null FS or GS
selector kills its base). The data selectors are not checked here: Xen loads them
when the vCPU first runs, and one that cannot be loaded sends it to its failsafe
callback (hv/bounce64.py load_segments).

The GDT the context names becomes the vCPU's own, as for a 32-bit vCPU
(hv/vcpu_context.py load_with_gdt), and CS and SS are checked against it. pvtool refuses
(-EINVAL) what it cannot give: an LDT, a CS other than Xen's flat 64-bit one or a
64-bit user code segment of the guest's, an SS other than Xen's flat one or a ring-3
data segment of the guest's. The FPU area, debug registers and vm_assist are not read.
"""

from functools import partial

from pvtool.abi.xen import (
    TI_DPL_MASK,
    TI_MASK_EVENTS,
    VGCF_FAILSAFE_DISABLES_EVENTS,
    VGCF_IN_KERNEL,
    VGCF_SYSCALL_DISABLES_EVENTS,
    CallbackType,
    Errno,
)
from pvtool.abi.xen64 import (
    FLAT_KERNEL_CS64,
    FLAT_KERNEL_SS64,
    GUEST_KERNEL_RPL_64,
    TRAP_INFO_64,
    USER_REGS_64,
    VCPU_GUEST_CONTEXT_64,
)
from pvtool.hv.domain import PvDomain, VCpu
from pvtool.hv.errors import HypercallError
from pvtool.hv.segments64 import CODE64, DATA_SEGMENTS, STACK
from pvtool.hv.vcpu64 import Callback64, TrapInfo64, in_hypervisor_range
from pvtool.hv.vcpu_context import IOPL_SHIFT, TRAP_VECTORS, load_with_gdt
from pvtool.machine.context import SegmentCache
from pvtool.machine.cpu import FS_BASE, GPRS64_BY_NAME, GS_BASE, RFLAGS, RIP, RSP
from pvtool.x86.paging import PAGE_SHIFT, PAGE_SIZE, is_canonical
from pvtool.x86.registers import EFLAGS_IF, EFLAGS_IOPL, EFLAGS_RESERVED

CANONICAL_FIELDS = ("rip", "rsp", "kernel_sp", "fs_base", "gs_base_kernel", "gs_base_user",
                    "event_callback_eip", "syscall_callback_eip", "failsafe_callback_eip")


def initialise64(dom: PvDomain, target: VCpu, arg: int) -> int:
    ctx = VCPU_GUEST_CONTEXT_64.unpack(dom.copy_from_guest(arg, VCPU_GUEST_CONTEXT_64.size))
    if target.initialised:
        raise HypercallError(Errno.EEXIST, f"vcpu {target.id} is initialised already")
    _check_addresses(ctx)
    trap_table = _trap_table(ctx["trap_ctxt"])
    load_with_gdt(target, ctx, partial(_load_context, dom, target, ctx, trap_table))
    return 0


def _load_context(dom: PvDomain, target: VCpu, ctx: dict,
                  trap_table: dict[int, TrapInfo64]) -> None:
    """Everything but the GDT, checked against TARGET's GDT, then kept on TARGET."""
    in_kernel = bool(ctx["flags"] & VGCF_IN_KERNEL)
    user_l4 = ctx["ctrlreg"][1] >> PAGE_SHIFT
    if not in_kernel and not user_l4:
        raise HypercallError(Errno.EINVAL, "a vCPU starting in user mode needs a user L4 "
                             "(ctrlreg[1])")
    _check_selectors(target, ctx)
    kernel_l4 = ctx["ctrlreg"][3] >> PAGE_SHIFT
    _hold_bases(dom, kernel_l4, user_l4)
    state = target.long_mode
    state.kernel_mode, state.kernel_sp, state.user_base_mfn = in_kernel, ctx["kernel_sp"], user_l4
    state.trap_table, state.callbacks = trap_table, _callbacks(ctx)
    target.base_mfn, target.kernel_sp = kernel_l4, ctx["kernel_sp"]
    target.iopl = (ctx["rflags"] & EFLAGS_IOPL) >> IOPL_SHIFT
    target.start_state = partial(_start, dom, target, ctx)
    target.initialised = True


def _check_addresses(ctx: dict) -> None:
    for name in CANONICAL_FIELDS:
        if not is_canonical(ctx[name]):
            raise HypercallError(Errno.EINVAL, f"{name} {ctx[name]:#x} is not canonical")
    base = ctx["ldt_base"]
    if ctx["ldt_ents"] and not is_canonical(base) or in_hypervisor_range(base) \
            or base % PAGE_SIZE:
        raise HypercallError(Errno.EINVAL, f"LDT base {base:#x}")


def _trap_table(raw: bytes) -> dict[int, TrapInfo64]:
    """trap_ctxt[256], indexed by vector: address 0 is no handler; a non-canonical
    one is -EINVAL."""
    table = {}
    for vector in range(TRAP_VECTORS):
        entry = TRAP_INFO_64.unpack(raw[vector * TRAP_INFO_64.size:])
        address, flags = entry["address"], entry["flags"]
        if not is_canonical(address):
            raise HypercallError(Errno.EINVAL, f"trap {vector} handler {address:#x} "
                                 "is not canonical")
        if address:
            table[vector] = TrapInfo64(vector, flags & TI_DPL_MASK,
                                       bool(flags & TI_MASK_EVENTS), address)
    return table


def _check_selectors(target: VCpu, ctx: dict) -> None:
    """CS and SS, their RPL raised to 3 (fixup_guest_code/stack_selector): what the
    vCPU can run on (module docstring)."""
    cs, ss = _kernel_rpl(ctx["cs"]), _kernel_rpl(ctx["ss"])
    if cs != FLAT_KERNEL_CS64 and not target.gdt.is_user_code64(cs):
        raise HypercallError(Errno.EINVAL, f"initial CS {cs:#x} is no 64-bit code segment")
    if ss != FLAT_KERNEL_SS64 and not target.gdt.is_stack_selector(ss, GUEST_KERNEL_RPL_64):
        raise HypercallError(Errno.EINVAL, f"initial SS {ss:#x} is no ring-3 stack segment")


def _kernel_rpl(selector: int) -> int:
    return selector | GUEST_KERNEL_RPL_64


def _hold_bases(dom: PvDomain, kernel_l4: int, user_l4: int) -> None:
    """Validate and hold both L4s (the vCPU's guest_table and guest_table_user); a
    refused user L4 lets the kernel's go again, as Xen puts cr3_page back."""
    tables = dom.pagetables
    tables.hold_base(kernel_l4)
    if not user_l4:
        return
    try:
        tables.hold_base(user_l4)
    except HypercallError:
        tables.validator.put_table(kernel_l4, None)
        raise


def _callbacks(ctx: dict) -> dict[CallbackType, Callback64]:
    """The three the context holds (address 0: none)."""
    flags = ctx["flags"]
    masks = {CallbackType.event: False,
             CallbackType.failsafe: bool(flags & VGCF_FAILSAFE_DISABLES_EVENTS),
             CallbackType.syscall: bool(flags & VGCF_SYSCALL_DISABLES_EVENTS)}
    return {kind: Callback64(ctx[f"{kind.name}_callback_eip"], mask)
            for kind, mask in masks.items() if ctx[f"{kind.name}_callback_eip"]}


def _start(dom: PvDomain, vcpu: VCpu, ctx: dict) -> None:
    """The vCPU's first run: Xen's flat CS and SS (CPL 3, 64-bit code), the context's
    registers, RFLAGS with IF and without IOPL, the segment bases (the GS base active
    in the vCPU's mode), and the data selectors as bare selectors, which the
    scheduler's load_segments then loads or refuses."""
    cpu, state = dom.machine.cpu, vcpu.long_mode
    vcpu.load_gdt()
    cpu.load_segments(CODE64, STACK)
    for name in USER_REGS_64:
        cpu.write(GPRS64_BY_NAME[name], ctx[name])
    cpu.write(RSP, ctx["rsp"])
    cpu.write(RFLAGS, (ctx["rflags"] | EFLAGS_IF | EFLAGS_RESERVED) & ~EFLAGS_IOPL)
    fs_base = 0 if ctx["fs"] & ~3 else ctx["fs_base"]
    gs_user = 0 if ctx["gs"] & ~3 else ctx["gs_base_user"]
    active, inactive = (ctx["gs_base_kernel"], gs_user) if state.kernel_mode \
        else (gs_user, ctx["gs_base_kernel"])
    cpu.load_segment_caches({index: SegmentCache(ctx[name], 0, 0, 0)
                             for name, _, index in DATA_SEGMENTS})
    cpu.write(FS_BASE, fs_base)
    cpu.write(GS_BASE, active)
    state.inactive_gs_base = inactive
    cpu.write(RIP, ctx["rip"])
