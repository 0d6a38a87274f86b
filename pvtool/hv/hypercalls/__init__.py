"""Every hypercall pvtool services, in one table from Xen's number to its handler.

A handler is a function of (domain, vcpu, args) that returns the value for EAX (0 or
a result) or raises HypercallError for -errno; it never touches Unicorn. HYPERVISOR_iret
returns NO_RESULT: it restores EAX from the guest's frame instead.
"""

from collections.abc import Sequence

from pvtool.abi.xen import Errno, Hypercall, hypercall_name
from pvtool.hv.domain import PvDomain, VCpu
from pvtool.hv.errors import HypercallError
from pvtool.hv.hypercalls import (
    console,
    debugreg,
    descriptors,
    events,
    grant_table,
    info,
    memory,
    mmu,
    multicall,
    sched,
    traps,
    traps64,
    vcpu,
    version,
)
from pvtool.hv.hypercalls.common import NO_RESULT, Handler

TABLE: dict[int, Handler] = {
    Hypercall.set_trap_table: traps.set_trap_table,
    Hypercall.mmu_update: mmu.mmu_update,
    Hypercall.set_gdt: descriptors.set_gdt,
    Hypercall.stack_switch: traps.stack_switch,
    Hypercall.set_callbacks: traps.set_callbacks,
    Hypercall.fpu_taskswitch: info.fpu_taskswitch,
    Hypercall.sched_op_compat: sched.sched_op_compat,
    Hypercall.set_debugreg: debugreg.set_debugreg,
    Hypercall.get_debugreg: debugreg.get_debugreg,
    Hypercall.update_descriptor: descriptors.update_descriptor,
    Hypercall.memory_op: memory.memory_op,
    Hypercall.multicall: multicall.multicall,
    Hypercall.update_va_mapping: mmu.update_va_mapping,
    Hypercall.set_timer_op: events.set_timer_op,
    Hypercall.xen_version: version.xen_version,
    Hypercall.console_io: console.console_io,
    Hypercall.grant_table_op: grant_table.grant_table_op,
    Hypercall.vm_assist: info.vm_assist,
    Hypercall.iret: traps.iret,
    Hypercall.vcpu_op: vcpu.vcpu_op,
    Hypercall.mmuext_op: mmu.mmuext_op,
    Hypercall.sched_op: sched.sched_op,
    Hypercall.callback_op: traps.callback_op,
    Hypercall.event_channel_op: events.event_channel_op,
    Hypercall.physdev_op: info.physdev_op,
}

# A 64-bit guest's table: the same hypercalls, those whose layouts or rules differ
# for 64-bit replaced, and set_segment_base, which only 64-bit guests have.
TABLE_64: dict[int, Handler] = TABLE | {
    Hypercall.set_trap_table: traps64.set_trap_table,
    Hypercall.stack_switch: traps64.stack_switch,
    Hypercall.set_callbacks: traps64.set_callbacks,
    Hypercall.callback_op: traps64.callback_op,
    Hypercall.iret: traps64.iret,
    Hypercall.set_segment_base: traps64.set_segment_base,
    Hypercall.update_descriptor: descriptors.update_descriptor_64,
}
TABLES = {32: TABLE, 64: TABLE_64}


def call(domain: PvDomain, vcpu: VCpu, number: int, args: Sequence[int],
         table: dict[int, Handler] = TABLE) -> int:
    """Run one hypercall from TABLE (the guest width's) and return what EAX gets (or
    NO_RESULT). This is the hot path of a PV guest: nothing is formatted unless
    --trace asked for it."""
    domain.hypercalls_by_number[number] += 1
    handler = table.get(number)
    if handler is None:
        if domain.trace:
            domain.log(f"hypercall {hypercall_name(number)}: -ENOSYS")
        return -Errno.ENOSYS
    try:
        result = handler(domain, vcpu, args)
    except HypercallError as refusal:
        if domain.trace:
            domain.log(f"hypercall {hypercall_name(number)}{_hex(args)}: "
                       f"-{refusal.errno.name} {refusal.why}")
        return -refusal.errno
    if domain.trace and result is not NO_RESULT:
        domain.log(f"hypercall {hypercall_name(number)}{_hex(args)} = {_result(result)}")
    return result


def _hex(args: Sequence[int]) -> str:
    """Arguments as --trace prints them: in hex, since most are pointers, frames or
    handles (as Xen's own traces and xentrace_format print them)."""
    return "(" + ", ".join(f"{arg:#x}" for arg in args) + ")"


def _result(result: int) -> str:
    """A refusal by its errno's name (Xen returns -errno), anything else in hex."""
    if result < 0:
        try:
            return f"-{Errno(-result).name}"
        except ValueError:
            pass
    return f"{result:#x}"


# Hypercalls that cannot arm a timer, make an event pending, unmask events, register
# the event callback, block, yield or switch the vCPU. On their return the hypervisor
# only looks at what the guest itself may have changed (its vcpu_info: an upcall it
# made pending, as Linux's unmask_evtchn does before forcing the callback with a
# xen_version): timers cannot be due, since virtual time stands still within a slice
# and every timer due when it began fired then (PvSupervisor.take_interrupt). Every
# hypercall not listed gets the whole of Xen's return path.
QUIET = frozenset(map(int, {
    Hypercall.xen_version, Hypercall.console_io, Hypercall.mmu_update,
    Hypercall.update_va_mapping, Hypercall.mmuext_op, Hypercall.update_descriptor,
    Hypercall.set_gdt, Hypercall.set_trap_table, Hypercall.stack_switch,
    Hypercall.memory_op, Hypercall.fpu_taskswitch, Hypercall.set_debugreg,
    Hypercall.get_debugreg, Hypercall.vm_assist, Hypercall.set_segment_base,
    Hypercall.grant_table_op,
}))
