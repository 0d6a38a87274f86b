"""Event channels and the timer: event_channel_op and set_timer_op (hv/events.py)."""

import struct

from pvtool.abi.layouts import (
    EVTCHN_ALLOC_UNBOUND,
    EVTCHN_BIND_VIRQ,
    EVTCHN_CLOSE,
    EVTCHN_SEND,
    EVTCHN_STATUS,
    EVTCHN_UNMASK,
)
from pvtool.abi.xen import Errno, EvtchnOp
from pvtool.hv.domain import PvDomain, VCpu
from pvtool.hv.errors import HypercallError


def event_channel_op(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    cmd, arg = args[0], args[1]
    events = dom.events
    if cmd == EvtchnOp.bind_virq:
        req = EVTCHN_BIND_VIRQ.unpack(dom.copy_from_guest(arg, EVTCHN_BIND_VIRQ.size))
        port = events.bind_virq(req["virq"], req["vcpu"])
        dom.copy_to_guest(arg + EVTCHN_BIND_VIRQ.offset("port"), struct.pack("<I", port))
    elif cmd == EvtchnOp.send:
        events.send(_port_arg(dom, arg, EVTCHN_SEND))
    elif cmd == EvtchnOp.unmask:
        events.unmask(_port_arg(dom, arg, EVTCHN_UNMASK))
    elif cmd == EvtchnOp.close:
        events.close(_port_arg(dom, arg, EVTCHN_CLOSE))
    elif cmd == EvtchnOp.status:
        req = EVTCHN_STATUS.unpack(dom.copy_from_guest(arg, EVTCHN_STATUS.size))
        if not dom.is_named_by(req["dom"]):
            raise HypercallError(Errno.ESRCH, f"status of domain {req['dom']:#x}")
        status, u0, u1 = events.status(req["port"])
        dom.copy_to_guest(arg + EVTCHN_STATUS.offset("status"),
                          struct.pack("<4I", status, 0, u0, u1))
    elif cmd == EvtchnOp.alloc_unbound:
        req = EVTCHN_ALLOC_UNBOUND.unpack(dom.copy_from_guest(arg, EVTCHN_ALLOC_UNBOUND.size))
        port = events.alloc_unbound(req["dom"], req["remote_dom"])
        dom.copy_to_guest(arg + EVTCHN_ALLOC_UNBOUND.offset("port"), struct.pack("<I", port))
    else:
        raise HypercallError(Errno.ENOSYS, f"event_channel_op command {cmd}")
    return 0


def _port_arg(dom: PvDomain, arg: int, layout) -> int:
    return layout.unpack(dom.copy_from_guest(arg, layout.size))["port"]


def set_timer_op(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    """One-shot VIRQ_TIMER at an absolute system time in ns (lo, hi); 0 cancels."""
    dom.events.set_timer(args[1] << 32 | args[0])
    return 0
