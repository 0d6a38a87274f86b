"""HYPERVISOR_sched_op: yield, block, poll and shutdown. Block and poll are the
calling vCPU's: with several vCPUs it leaves the CPU to the others (hv/scheduler.py)
until an event wakes it; with one the run loop moves time on to the next event."""

import struct

from pvtool.abi.layouts import SCHED_POLL
from pvtool.abi.xen import NR_EVENT_CHANNELS_32, Errno, SchedOp, ShutdownReason
from pvtool.hv.domain import PvDomain, VCpu
from pvtool.hv.errors import HypercallError
from pvtool.machine.stop import Stop, StopKind


def sched_op(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    cmd, arg = args[0], args[1]
    if cmd == SchedOp.yield_:
        if dom.console_ring is not None:
            dom.console_ring.drain()  # the backend runs when the guest gives up the CPU
        if dom.scheduler.active:
            dom.machine.end_slice()  # the next runnable vCPU's turn
        return 0
    if cmd == SchedOp.block:
        # Xen's block enables event delivery, then sleeps unless an event is pending.
        dom.upcall_mask = 0
        if dom.events.work_pending():
            return 0
        return _sleep(dom, "blocked (SCHEDOP_block)")
    if cmd == SchedOp.poll:
        return _poll(dom, arg)
    if cmd == SchedOp.shutdown:
        (reason,) = struct.unpack("<I", dom.copy_from_guest(arg, 4))
        return _shutdown(dom, reason)
    raise HypercallError(Errno.ENOSYS, f"sched_op command {cmd}")


def sched_op_compat(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    """The old form: the shutdown reason is the argument itself, not a pointer."""
    if args[0] == SchedOp.shutdown:
        return _shutdown(dom, args[1])
    return sched_op(dom, vcpu, args)


def _shutdown(dom: PvDomain, reason: int) -> int:
    try:
        name = ShutdownReason(reason).name
    except ValueError:
        raise HypercallError(Errno.EINVAL, f"shutdown reason {reason}") from None
    failure = dom.glue_failure() if reason == ShutdownReason.crash else None
    if failure is not None:  # the glue gave up and said why (docs/ABI.md)
        dom.machine.request_stop(failure)
    else:
        dom.shutdown(reason, f"shutdown ({name})")
    return 0


def _poll(dom: PvDomain, arg: int) -> int:
    """Wait, events masked or not, until one of the ports is pending or the timeout
    (absolute system time in ns; 0: none) passes (Xen's do_poll). The vCPU resumes at
    the next event of any kind: it has nothing else to run."""
    req = SCHED_POLL.unpack(dom.copy_from_guest(arg, SCHED_POLL.size))
    count = req["nr_ports"]
    if count > 128:
        raise HypercallError(Errno.EINVAL, f"poll on {count} ports")
    ports = struct.unpack(f"<{count}I", dom.copy_from_guest(req["ports"], 4 * count))
    if any(port >= NR_EVENT_CHANNELS_32 for port in ports):
        raise HypercallError(Errno.EINVAL, f"poll on ports {ports}")
    events = dom.events
    if any(events.is_pending(port) for port in ports):
        return 0
    if req["timeout"] and events.now_ns() >= req["timeout"]:
        return 0
    events.poll_deadline = req["timeout"] or None
    events.polling = frozenset(ports)
    events.pause_periodic(dom.vcpu)  # off the CPU: its ticks do not wake it
    if dom.scheduler.active:  # another vCPU may send on a port
        dom.scheduler.block(dom.vcpu)
        return 0
    if events.insns_to_timer() is None:
        events.polling = None
        dom.machine.request_stop(Stop(StopKind.HALTED, "SCHEDOP_poll with nothing to "
                                      "wake it", dom.vcpu.eip))
        return 0
    dom.machine.block()
    return 0


def _sleep(dom: PvDomain, what: str) -> int:
    """The vCPU waits for an event: the run loop moves virtual time on to the next
    one. Polling with events masked waits forever, which ends the run."""
    if dom.scheduler.active:
        dom.scheduler.block(dom.vcpu)
    elif dom.upcall_mask:
        dom.machine.request_stop(Stop(StopKind.HALTED, f"{what}: nothing can wake it",
                                      dom.vcpu.eip))
    else:
        dom.events.pause_periodic(dom.vcpu)  # off the CPU: its ticks do not wake it
        dom.machine.block()
    return 0
