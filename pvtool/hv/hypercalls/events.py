"""Event channels and the timer: event_channel_op and set_timer_op (hv/events.py).

Each EVTCHNOP_* reads its argument first, as do_event_channel_op copies it in before
anything else (-EFAULT), then answers as xen/common/event_channel.c does. pvtool is a
Xen built without CONFIG_EVTCHN_FIFO (xen/common/Kconfig, an option since Xen 4.15):
its event channels are the 2-level ABI only, so init_control and expand_array are
-EOPNOTSUPP (event_channel.h's stubs), and set_priority, which 2-level ports have no
operation for, is -ENOSYS (evtchn_port_set_priority) once its port is valid (-EINVAL).
A guest then falls back to 2-level, as Linux's xen_evtchn_fifo_init failing does.
"""

import struct
from collections.abc import Callable

from pvtool.abi.layouts import (
    EVTCHN_ALLOC_UNBOUND,
    EVTCHN_BIND_IPI,
    EVTCHN_BIND_VCPU,
    EVTCHN_BIND_VIRQ,
    EVTCHN_CLOSE,
    EVTCHN_EXPAND_ARRAY,
    EVTCHN_INIT_CONTROL,
    EVTCHN_RESET,
    EVTCHN_SEND,
    EVTCHN_SET_PRIORITY,
    EVTCHN_STATUS,
    EVTCHN_UNMASK,
    Layout,
)
from pvtool.abi.xen import Errno, EvtchnOp
from pvtool.hv.domain import PvDomain, VCpu
from pvtool.hv.errors import HypercallError


def event_channel_op(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    cmd, arg = args[0], args[1]
    operation = OPERATIONS.get(cmd)
    if operation is None:
        raise HypercallError(Errno.ENOSYS, f"event_channel_op command {cmd}")
    layout, run = operation
    run(dom, arg, layout.unpack(dom.copy_from_guest(arg, layout.size)))
    return 0


def _give_port(dom: PvDomain, arg: int, layout, port: int) -> None:
    dom.copy_to_guest(arg + layout.offset("port"), struct.pack("<I", port))


def bind_virq(dom: PvDomain, arg: int, req: dict) -> None:
    _give_port(dom, arg, EVTCHN_BIND_VIRQ, dom.events.bind_virq(req["virq"], req["vcpu"]))


def bind_ipi(dom: PvDomain, arg: int, req: dict) -> None:
    _give_port(dom, arg, EVTCHN_BIND_IPI, dom.events.bind_ipi(req["vcpu"]))


def bind_vcpu(dom: PvDomain, arg: int, req: dict) -> None:
    dom.events.bind_vcpu(req["port"], req["vcpu"])


def alloc_unbound(dom: PvDomain, arg: int, req: dict) -> None:
    port = dom.events.alloc_unbound(req["dom"], req["remote_dom"])
    _give_port(dom, arg, EVTCHN_ALLOC_UNBOUND, port)


def send(dom: PvDomain, arg: int, req: dict) -> None:
    dom.events.send(req["port"])


def unmask(dom: PvDomain, arg: int, req: dict) -> None:
    dom.events.unmask(req["port"])


def close(dom: PvDomain, arg: int, req: dict) -> None:
    dom.events.close(req["port"])


def status(dom: PvDomain, arg: int, req: dict) -> None:
    if not dom.is_named_by(req["dom"]):
        raise HypercallError(Errno.ESRCH, f"status of domain {req['dom']:#x}")
    state, u0, u1 = dom.events.status(req["port"])
    vcpu_id = dom.events.notify_vcpu(req["port"])
    dom.copy_to_guest(arg + EVTCHN_STATUS.offset("status"),
                      struct.pack("<4I", state, vcpu_id, u0, u1))


def reset(dom: PvDomain, arg: int, req: dict) -> None:
    """evtchn_reset of DOMID_SELF or the domain's own id; another domain is not found
    (rcu_lock_domain_by_any_id: -ESRCH)."""
    if not dom.is_named_by(req["dom"]):
        raise HypercallError(Errno.ESRCH, f"reset of domain {req['dom']:#x}")
    dom.events.reset()


def no_fifo(dom: PvDomain, arg: int, req: dict) -> None:
    raise HypercallError(Errno.EOPNOTSUPP, "the FIFO event-channel ABI is not built in")


def set_priority(dom: PvDomain, arg: int, req: dict) -> None:
    """evtchn_set_priority looks the port up first (_evtchn_from_port: -EINVAL unless
    port_is_valid, bound or not), then asks the ABI, which for 2-level has no
    set_priority (-ENOSYS)."""
    if not dom.events.port_is_valid(req["port"]):
        raise HypercallError(Errno.EINVAL, f"port {req['port']}")
    raise HypercallError(Errno.ENOSYS, "2-level event channels have no priorities")


OPERATIONS: dict[int, tuple[Layout, Callable[[PvDomain, int, dict], None]]] = {
    EvtchnOp.bind_virq: (EVTCHN_BIND_VIRQ, bind_virq),
    EvtchnOp.bind_ipi: (EVTCHN_BIND_IPI, bind_ipi),
    EvtchnOp.bind_vcpu: (EVTCHN_BIND_VCPU, bind_vcpu),
    EvtchnOp.alloc_unbound: (EVTCHN_ALLOC_UNBOUND, alloc_unbound),
    EvtchnOp.send: (EVTCHN_SEND, send),
    EvtchnOp.unmask: (EVTCHN_UNMASK, unmask),
    EvtchnOp.close: (EVTCHN_CLOSE, close),
    EvtchnOp.status: (EVTCHN_STATUS, status),
    EvtchnOp.reset: (EVTCHN_RESET, reset),
    EvtchnOp.init_control: (EVTCHN_INIT_CONTROL, no_fifo),
    EvtchnOp.expand_array: (EVTCHN_EXPAND_ARRAY, no_fifo),
    EvtchnOp.set_priority: (EVTCHN_SET_PRIORITY, set_priority),
}


def set_timer_op(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    """One-shot VIRQ_TIMER at an absolute system time in ns, 0 cancels: one u64 from
    a 64-bit guest, (lo, hi) from a 32-bit one (do_set_timer_op's s_time_t)."""
    dom.events.set_timer(args[0] if vcpu.bits == 64 else args[1] << 32 | args[0])
    return 0
