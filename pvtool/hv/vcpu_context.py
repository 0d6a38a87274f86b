"""VCPUOP_initialise: a vCPU's first state from a vcpu_guest_context (public/arch-x86/
xen.h), checked as Xen's arch_set_info_guest (xen/arch/x86/domain.c) checks a 32-bit
PV guest's, and kept on the vCPU until the scheduler first puts it on the CPU.

Xen refuses a vCPU whose vcpu_info is not available (never here: every vCPU has its
slot in shared_info, --vcpus being at most 32), an initialised vCPU (-EEXIST), an
LDT of more than 8192 entries and a GDT reaching Xen's reserved entries (-EINVAL).
Selectors below ring 1 get the kernel's RPL (fixup_guest_code_selector and
fixup_guest_stack_selector); EFLAGS gets IF set ("ensure real hardware interrupts
are enabled") and its IOPL becomes the vCPU's virtual IOPL (arch.pv.iopl).

The page-table base in ctrlreg[3] is validated as a base now (-EINVAL if the
hierarchy is not one the domain may use) and held by the vCPU, as Xen's
v->arch.guest_table. The GDT the context names (gdt_frames, gdt_ents) becomes the
vCPU's own, as pv_set_gdt makes it, before the selectors are checked against it; a
refusal leaves the vCPU with none. pvtool has no LDT, so an LDT is -EINVAL. The FPU area,
debug registers and vm_assist are not read: pvtool keeps no per-vCPU FPU state, and
vm_assist is the domain's (Xen takes it from vCPU 0's context only). Neither is
VGCF_online: VCPUOP_up brings the vCPU up (docs/ABI.md).

A 64-bit vCPU's context has its own layout and rules: hv/vcpu_context64.py.
"""

from collections.abc import Callable
from functools import partial

from pvtool.abi.layouts import TRAP_INFO, VCPU_GUEST_CONTEXT
from pvtool.abi.xen import (
    GUEST_KERNEL_RPL,
    TI_DPL_MASK,
    TI_MASK_EVENTS,
    CallbackType,
    Errno,
)
from pvtool.hv.domain import PvDomain, TrapInfo, VCpu, fix_selector_rpl
from pvtool.hv.errors import HypercallError
from pvtool.hv.gdt import Gdt
from pvtool.machine.cpu import DS, EAX, EBP, EBX, ECX, EDI, EDX, ES, ESI, FS, GS
from pvtool.x86.registers import EFLAGS_IF, EFLAGS_IOPL, EFLAGS_RESERVED

MAX_LDT_ENTRIES = 8192
IOPL_SHIFT = 12
TRAP_VECTORS = 256
GPRS = {EAX: "eax", EBX: "ebx", ECX: "ecx", EDX: "edx", ESI: "esi", EDI: "edi", EBP: "ebp"}
DATA_SEGMENTS = {DS: "ds", ES: "es", FS: "fs", GS: "gs"}
GDT_FRAME_ENTRIES = 512


def initialise(dom: PvDomain, target: VCpu, arg: int) -> int:
    ctx = VCPU_GUEST_CONTEXT.unpack(dom.copy_from_guest(arg, VCPU_GUEST_CONTEXT.size))
    if target.initialised:
        raise HypercallError(Errno.EEXIST, f"vcpu {target.id} is initialised already")
    load_with_gdt(target, ctx, partial(_load_context, dom, target, ctx))
    return 0


def load_with_gdt(target: VCpu, ctx: dict, load: Callable[[], None]) -> None:
    """The LDT checked, the GDT the context names made TARGET's own (pv_set_gdt),
    then LOAD, which checks the rest against that GDT: a refusal leaves TARGET with no
    GDT. Both widths' contexts name their GDT alike."""
    _check_ldt(ctx)
    entries = ctx["gdt_ents"]
    frames = tuple(ctx["gdt_frames"][:-(-entries // GDT_FRAME_ENTRIES)]) if entries else ()
    target.gdt.set_gdt(frames, entries)
    try:
        load()
    except HypercallError:
        target.gdt.set_gdt((), 0)  # refused whole: no GDT left behind
        raise


def _load_context(dom: PvDomain, target: VCpu, ctx: dict) -> None:
    """Everything but the GDT, checked against TARGET's GDT, then kept on TARGET."""
    gdt = target.gdt
    cs, ss = fix_selector_rpl(ctx["cs"]), fix_selector_rpl(ctx["ss"])
    if not gdt.is_code_selector(cs, GUEST_KERNEL_RPL):
        raise HypercallError(Errno.EINVAL, f"initial CS {cs:#x} is no ring-1 code segment")
    if not gdt.is_stack_selector(ss, GUEST_KERNEL_RPL):
        raise HypercallError(Errno.EINVAL, f"initial SS {ss:#x} is no ring-1 stack segment")
    segments = {reg: _data_selector(gdt, ctx[name]) for reg, name in DATA_SEGMENTS.items()}
    base = xen_cr3_to_pfn(ctx["ctrlreg"][3])
    dom.pagetables.hold_base(base)  # validated now, -EINVAL if it is no page table
    target.base_mfn = base
    target.trap_table = _trap_table(ctx["trap_ctxt"])
    target.callbacks = {
        CallbackType.event: (fix_selector_rpl(ctx["event_callback_cs"]),
                             ctx["event_callback_eip"], 0),
        CallbackType.failsafe: (fix_selector_rpl(ctx["failsafe_callback_cs"]),
                                ctx["failsafe_callback_eip"], 0),
    }
    target.kernel_ss, target.kernel_sp = fix_selector_rpl(ctx["kernel_ss"]), ctx["kernel_sp"]
    # Real interrupts stay enabled; the IOPL is virtualised: it becomes the vCPU's.
    eflags = (ctx["eflags"] | EFLAGS_IF | EFLAGS_RESERVED) & ~EFLAGS_IOPL
    target.iopl = (ctx["eflags"] & EFLAGS_IOPL) >> IOPL_SHIFT
    gprs = {reg: ctx[name] for reg, name in GPRS.items()}
    target.start_state = partial(_start, target, gprs, segments, cs=cs, eip=ctx["eip"],
                                 ss=ss, esp=ctx["esp"], eflags=eflags)
    target.initialised = True


def _start(vcpu: VCpu, gprs: dict[int, int], segments: dict[int, int], **entry: int) -> None:
    """A vCPU's first run after VCPUOP_initialise: the CPU keeps the control registers
    it has, takes the vCPU's own GDT (its saved contexts keep it from then on) and the
    guest's registers; the iretd to its CS:EIP runs first in the slice."""
    vcpu.load_gdt()
    for reg, value in gprs.items():
        vcpu.set(reg, value)
    vcpu.start(**entry)
    for reg, value in segments.items():
        vcpu.set(reg, value)


def _check_ldt(ctx: dict) -> None:
    if ctx["ldt_ents"] > MAX_LDT_ENTRIES:
        raise HypercallError(Errno.EINVAL, f"an LDT of {ctx['ldt_ents']} entries")
    if ctx["ldt_ents"]:
        raise HypercallError(Errno.EINVAL, "pvtool has no LDT for a vCPU (docs/ABI.md)")


def xen_cr3_to_pfn(cr3: int) -> int:
    """A 32-bit PAE guest's CR3 holds its frame number rotated (public/arch-x86/
    xen-x86_32.h, xen_cr3_to_pfn): bits 12-31 the low bits, 0-11 the high."""
    return (cr3 >> 12 | (cr3 & 0xFFF) << 20) & 0xFFFFFFFF


def _data_selector(gdt: Gdt, selector: int) -> int:
    """A data segment register's selector: null, or a ring-1 writable data segment."""
    selector = fix_selector_rpl(selector) if selector & ~3 else 0
    if selector and not gdt.is_stack_selector(selector, GUEST_KERNEL_RPL):
        raise HypercallError(Errno.EINVAL, f"initial data selector {selector:#x}")
    return selector


def _trap_table(raw: bytes) -> dict[int, TrapInfo]:
    """trap_ctxt[256], indexed by vector: an entry with address 0 is no handler."""
    table = {}
    for vector in range(TRAP_VECTORS):
        entry = TRAP_INFO.unpack(raw[vector * TRAP_INFO.size:(vector + 1) * TRAP_INFO.size])
        if entry["address"]:
            flags = entry["flags"]
            table[vector] = TrapInfo(vector=vector, dpl=flags & TI_DPL_MASK,
                                     masks_events=bool(flags & TI_MASK_EVENTS),
                                     cs=fix_selector_rpl(entry["cs"]),
                                     address=entry["address"])
    return table



