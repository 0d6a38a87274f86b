"""event_channel_op beyond the basics, as xen/common/event_channel.c answers it:
bind_ipi, bind_vcpu, reset, and the FIFO operations of a Xen built without
CONFIG_EVTCHN_FIFO (init_control and expand_array -EOPNOTSUPP, event_channel.h's
stubs; set_priority -ENOSYS, 2-level ports having no priority). Numbers and layouts
are typed from public/event_channel.h.
"""

import struct

import pytest

from tests.hv.harness import hypercall
from tests.hv.xenguest import DOMID_SELF, EFAULT, EINVAL, ENOSYS, HC, neg

ENOENT, ESRCH, EOPNOTSUPP = 2, 3, 95
(BIND_VIRQ, CLOSE, SEND, STATUS, ALLOC_UNBOUND, BIND_IPI, BIND_VCPU, RESET, INIT_CONTROL,
 EXPAND_ARRAY, SET_PRIORITY) = 1, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13
STATUS_CLOSED, STATUS_UNBOUND, STATUS_INTERDOMAIN, STATUS_VIRQ, STATUS_IPI = 0, 1, 2, 4, 5
VIRQ_TIMER, VIRQ_CONSOLE = 0, 2
CONSOLE_PORT, STORE_PORT = 2, 1
SHARED_INFO = 0xFC410000
EVTCHN_PENDING = SHARED_INFO + 2048

SCRATCH = r"""
buf:    .skip 4096
"""


def op(booted, cmd: int, *words: int, fmt: str = "I") -> int:
    buf = booted.guest["buf"]
    booted.write(buf, struct.pack("<" + fmt * len(words), *words) + bytes(32))
    return hypercall(booted, HC.event_channel_op, cmd, buf)


def out_word(booted, index: int) -> int:
    return struct.unpack("<I", booted.memory.read_phys(booted.guest["buf"] + 4 * index, 4))[0]


def status(booted, port: int) -> tuple[int, int]:
    """(status, vcpu) of evtchn_status for PORT of DOMID_SELF."""
    buf = booted.guest["buf"]
    booted.write(buf, struct.pack("<HHI", DOMID_SELF, 0, port) + bytes(16))
    assert hypercall(booted, HC.event_channel_op, STATUS, buf) == 0
    return out_word(booted, 2), out_word(booted, 3)


def pending(booted, port: int) -> bool:
    return bool(booted.memory.read_phys(EVTCHN_PENDING + port // 8, 1)[0] >> port % 8 & 1)


def test_bind_ipi_gives_an_ipi_port_that_a_send_raises_on_itself(idle):
    assert op(idle, BIND_IPI, 0, 0xFFFF) == 0
    port = out_word(idle, 1)
    assert port not in (0, CONSOLE_PORT, STORE_PORT)
    assert status(idle, port) == (STATUS_IPI, 0)
    assert not pending(idle, port)
    assert op(idle, SEND, port) == 0
    assert pending(idle, port)


@pytest.mark.parametrize("vcpu", [1, 127, 0xFFFFFFFF])
def test_bind_ipi_to_a_vcpu_the_domain_has_not_is_enoent(idle, vcpu):
    assert op(idle, BIND_IPI, vcpu, 0xFFFF) == neg(ENOENT)
    assert out_word(idle, 1) == 0xFFFF


def bound_virq(booted, virq: int) -> int:
    assert op(booted, BIND_VIRQ, virq, 0, 0) == 0
    return out_word(booted, 2)


def test_bind_vcpu_moves_unbound_interdomain_and_global_virq_ports_to_vcpu_0(idle):
    assert op(idle, ALLOC_UNBOUND, DOMID_SELF | 0 << 16, 0) == 0
    unbound = out_word(idle, 1)
    for port in (unbound, CONSOLE_PORT, bound_virq(idle, VIRQ_CONSOLE)):
        assert op(idle, BIND_VCPU, port, 0) == 0


def test_bind_vcpu_refuses_a_per_vcpu_virq_an_ipi_and_a_closed_port(idle):
    timer = bound_virq(idle, VIRQ_TIMER)
    assert op(idle, BIND_IPI, 0, 0) == 0
    ipi = out_word(idle, 1)
    for port in (timer, ipi, 200, 5000):
        assert op(idle, BIND_VCPU, port, 0) == neg(EINVAL), port


def test_bind_vcpu_to_a_vcpu_the_domain_has_not_is_enoent_before_the_port(idle):
    assert op(idle, BIND_VCPU, CONSOLE_PORT, 1) == neg(ENOENT)
    assert op(idle, BIND_VCPU, 5000, 1) == neg(ENOENT)


def test_reset_closes_every_port(idle):
    timer = bound_virq(idle, VIRQ_TIMER)
    assert op(idle, RESET, DOMID_SELF, fmt="H") == 0
    for port in (timer, CONSOLE_PORT, STORE_PORT):
        assert status(idle, port) == (STATUS_CLOSED, 0)
    assert bound_virq(idle, VIRQ_TIMER) == STORE_PORT  # the lowest free port again


def test_reset_by_the_domains_own_id_and_of_another_domain(idle):
    assert op(idle, RESET, idle.domain.domid, fmt="H") == 0
    assert op(idle, RESET, 7, fmt="H") == neg(ESRCH)


@pytest.mark.parametrize("cmd, words", [
    (INIT_CONTROL, (0x1234, 0, 0, 0, 0, 0)),  # control_gfn, offset, vcpu, link_bits
    (INIT_CONTROL, (0xFFFFFFFF, 0xFFFFFFFF, 4095, 7, 0, 0)),
    (EXPAND_ARRAY, (0x1234, 0)),
])
def test_fifo_operations_are_eopnotsupp_without_fifo(idle, cmd, words):
    assert op(idle, cmd, *words) == neg(EOPNOTSUPP)


@pytest.mark.parametrize("cmd", [INIT_CONTROL, EXPAND_ARRAY, SET_PRIORITY, BIND_IPI,
                                 BIND_VCPU, RESET])
def test_an_argument_xen_cannot_read_is_efault_first(idle, cmd):
    assert hypercall(idle, HC.event_channel_op, cmd, 0x40000000) == neg(EFAULT)


def test_set_priority_is_einval_for_an_invalid_port_else_enosys(idle):
    assert op(idle, SET_PRIORITY, CONSOLE_PORT, 5) == neg(ENOSYS)
    assert op(idle, SET_PRIORITY, 1 << 20, 5) == neg(EINVAL)


BUCKET = 64  # EVTCHNS_PER_BUCKET (xen/include/xen/sched.h): ports of one page


def test_set_priority_looks_the_port_up_first_valid_meaning_in_an_allocated_bucket(idle):
    """_evtchn_from_port before evtchn_port_set_priority: a port of the first bucket,
    bound or not, is valid (-ENOSYS); past it, -EINVAL until a port there is
    allocated; a reset frees ports, not buckets."""
    assert op(idle, SET_PRIORITY, BUCKET - 1, 0) == neg(ENOSYS)  # unbound, but valid
    assert op(idle, SET_PRIORITY, BUCKET, 0) == neg(EINVAL)
    port = 0
    while port < BUCKET:
        assert op(idle, ALLOC_UNBOUND, DOMID_SELF | 0 << 16, 0) == 0
        port = out_word(idle, 1)
    assert port == BUCKET
    assert op(idle, SET_PRIORITY, 2 * BUCKET - 1, 0) == neg(ENOSYS)
    assert op(idle, SET_PRIORITY, 2 * BUCKET, 0) == neg(EINVAL)
    assert op(idle, RESET, DOMID_SELF) == 0
    assert op(idle, SET_PRIORITY, BUCKET, 0) == neg(ENOSYS)


@pytest.mark.parametrize("cmd", [2, 14, 15, 99])
def test_the_rest_are_enosys(idle, cmd):
    """bind_pirq (a domU has no physical IRQs here), reset_cont (only after a reset
    that was preempted) and numbers event_channel.h does not define."""
    assert op(idle, cmd, 0, 0, 0) == neg(ENOSYS)
