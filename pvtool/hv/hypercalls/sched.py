"""HYPERVISOR_sched_op: yield, block, poll and shutdown of the domain's one vCPU."""

import struct

from pvtool.abi.xen import Errno, SchedOp, ShutdownReason
from pvtool.hv.domain import Domain, HypercallError, VCpu
from pvtool.machine.stop import Stop, StopKind


def sched_op(dom: Domain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    cmd, arg = args[0], args[1]
    if cmd == SchedOp.yield_:
        return 0
    if cmd == SchedOp.block:
        # Xen's block enables event delivery, then sleeps until an event is pending.
        dom.upcall_mask = 0
        return _sleep(dom, "blocked (SCHEDOP_block)")
    if cmd == SchedOp.poll:
        return _sleep(dom, "polling with events masked (SCHEDOP_poll)")
    if cmd == SchedOp.shutdown:
        (reason,) = struct.unpack("<I", dom.copy_from_guest(arg, 4))
        return _shutdown(dom, reason)
    raise HypercallError(Errno.ENOSYS, f"sched_op command {cmd}")


def sched_op_compat(dom: Domain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    """The old form: the shutdown reason is the argument itself, not a pointer."""
    if args[0] == SchedOp.shutdown:
        return _shutdown(dom, args[1])
    return sched_op(dom, vcpu, args)


def _shutdown(dom: Domain, reason: int) -> int:
    try:
        name = ShutdownReason(reason).name
    except ValueError:
        raise HypercallError(Errno.EINVAL, f"shutdown reason {reason}") from None
    dom.shutdown(reason, f"shutdown ({name})")
    return 0


def _sleep(dom: Domain, what: str) -> int:
    """The vCPU waits for an event: the run loop moves virtual time on to the next
    one. Polling with events masked waits forever, which ends the run."""
    if dom.upcall_mask:
        dom.machine.request_stop(Stop(StopKind.HALTED, f"{what}: nothing can wake it",
                                      dom.vcpu.eip))
    else:
        dom.machine.block()
    return 0
