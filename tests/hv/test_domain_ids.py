"""One rule for domain ids (issue 14): the guest is domain 1, the first domU as xl
numbers it, in the frame table, in every hypercall that names a domain, and in the
store; its backends are domain 0; start_info flags it as a domU.

Numbers are typed from Xen's headers here, not imported from pvtool.abi.
"""

import struct

import pytest

from pvtool.hv.errors import HypercallError
from pvtool.machine.cpu import ESI
from tests.hv.harness import hypercall

GUEST, BACKEND, DOMID_SELF = 1, 0, 0x7FF0
EVENT_CHANNEL_OP, STATUS, ALLOC_UNBOUND = 32, 5, 6
STATUS_UNBOUND = 1
START_INFO_FLAGS = 40  # start_info.flags, x86_32
SIF_PRIVILEGED, SIF_INITDOMAIN = 1, 2
ESRCH, EPERM = 3, 1
SCRATCH = "args: .skip 64\n"


def status(idle, port: int, dom: int) -> int:
    idle.write("args", struct.pack("<HHIIIII", dom, 0, port, 0, 0, 0, 0))
    return hypercall(idle, EVENT_CHANNEL_OP, STATUS, idle.addr("args"))


def test_the_guest_is_a_domu(idle):
    flags = struct.unpack("<I", idle.memory.read_phys(idle.cpu.read(ESI) + START_INFO_FLAGS,
                                                      4))[0]
    assert flags & (SIF_PRIVILEGED | SIF_INITDOMAIN) == 0


def test_its_frames_and_its_store_home_are_domain_1s(idle):
    domain = idle.domain
    assert domain.domid == GUEST
    assert domain.frames.owner(idle.addr("args") >> 12) == GUEST
    assert domain.xenstore.backend.read("/local/domain/1/domid") == b"1"


def test_event_channels_name_it_1_and_its_backends_0(idle):
    events = idle.domain.events
    port = events.alloc_unbound(GUEST, DOMID_SELF)  # a loopback: DOMID_SELF is 1
    assert events.status(port) == (STATUS_UNBOUND, GUEST, 0)
    port = events.alloc_unbound(DOMID_SELF, BACKEND)
    assert events.status(port) == (STATUS_UNBOUND, BACKEND, 0)
    with pytest.raises(HypercallError) as refused:
        events.alloc_unbound(BACKEND, GUEST)  # a port of domain 0's: not the guest's to make
    assert refused.value.errno == EPERM
    assert status(idle, port, GUEST) == 0 and status(idle, port, DOMID_SELF) == 0
    assert status(idle, port, BACKEND) == (-ESRCH) & 0xFFFFFFFF
