"""Interdomain event channels to backends in the hypervisor (event_channel.h; Xen's
common/event_channel.c): the guest allocates a port unbound for domain 0, a backend
binds it, the guest's sends run the backend, the backend raises the guest's port, and
either side closes.

Numbers are typed from event_channel.h here, not imported from pvtool.abi.
"""

import struct

import pytest

from pvtool.hv.errors import HypercallError
from tests.hv.harness import hypercall

EVENT_CHANNEL_OP = 32
CLOSE, SEND, STATUS, ALLOC_UNBOUND = 3, 4, 5, 6
DOMID_SELF = 0x7FF0
STATUS_CLOSED, STATUS_UNBOUND, STATUS_INTERDOMAIN = 0, 1, 2
SHARED_INFO = 0xFC410000
EVTCHN_PENDING = SHARED_INFO + 2048
SCRATCH = "args: .skip 64\n"


class Backend:
    def __init__(self):
        self.notified = 0

    def notify(self) -> None:
        self.notified += 1


def evtchn(idle, cmd: int, *words: int, fmt: str = "") -> int:
    idle.write("args", struct.pack(fmt or f"<{len(words)}I", *words))
    return hypercall(idle, EVENT_CHANNEL_OP, cmd, idle.addr("args"))


def alloc_unbound(idle, remote_dom: int = 0) -> int:
    assert evtchn(idle, ALLOC_UNBOUND, DOMID_SELF, remote_dom, 0, fmt="<HHI") == 0
    return idle.u32("args", 1)


def status(idle, port: int) -> tuple[int, int, int]:
    assert evtchn(idle, STATUS, DOMID_SELF, 0, port, 0, 0, 0, 0, fmt="<HHIIIII") == 0
    words = idle.u32s("args", 6)
    return words[2], words[4], words[5]


def pending(idle, port: int) -> bool:
    return bool(idle.memory.read_phys(EVTCHN_PENDING + port // 8, 1)[0] >> port % 8 & 1)


def test_a_backend_binds_the_port_its_frontend_allocated(idle):
    port = alloc_unbound(idle)
    assert status(idle, port) == (STATUS_UNBOUND, 0, 0)
    backend = Backend()
    channel = idle.domain.events.bind_backend(port, backend)
    assert status(idle, port) == (STATUS_INTERDOMAIN, 0, channel.local_port)
    assert channel.local_port == 1
    assert evtchn(idle, SEND, port) == 0 and evtchn(idle, SEND, port) == 0
    assert backend.notified == 2
    assert not pending(idle, port)
    channel.send()
    assert pending(idle, port)
    second = idle.domain.events.bind_backend(alloc_unbound(idle), Backend())
    assert second.local_port == 2  # the backend's own numbering


def test_only_a_port_unbound_for_the_backend_domain_binds(idle):
    events = idle.domain.events
    for port in (alloc_unbound(idle, remote_dom=3), 2, 100):  # another domain's, console's, none
        with pytest.raises(HypercallError):
            events.bind_backend(port, Backend())
    port = alloc_unbound(idle)
    events.bind_backend(port, Backend())
    with pytest.raises(HypercallError):
        events.bind_backend(port, Backend())  # bound already


def test_either_side_closes(idle):
    events = idle.domain.events
    port = alloc_unbound(idle)
    backend = Backend()
    channel = events.bind_backend(port, backend)
    channel.close()
    assert status(idle, port) == (STATUS_UNBOUND, 0, 0)
    assert evtchn(idle, SEND, port) == 0 and backend.notified == 0
    channel = events.bind_backend(port, backend)  # the backend may bind it again
    assert evtchn(idle, CLOSE, port) == 0
    assert status(idle, port) == (STATUS_CLOSED, 0, 0)
    assert not channel.connected
    channel.send()  # dropped: the guest's end is gone
    assert not pending(idle, port)
    reused = alloc_unbound(idle, remote_dom=7)
    assert reused == port
    channel.send()
    channel.close()  # touches nothing of the port's new owner
    assert not pending(idle, port) and status(idle, port) == (STATUS_UNBOUND, 7, 0)
