"""The vCPU scheduler's rule (docs/ABI.md, "The scheduling rule"): round-robin in id
order over the vCPUs that are up and not blocked, time moved on to the next event that
can wake one when none can run, and the run stopped when nothing can."""

import struct

import pytest

from pvtool.machine.stop import StopKind
from tests.hv.harness import boot, hypercall
from tests.hv.test_vcpu_op import context, vcpu_op
from tests.hv.xenguest import HC

INITIALISE, UP, SET_PERIODIC_TIMER, SET_SINGLESHOT_TIMER = 0, 1, 6, 8
RUNNABLE, OFFLINE = 1, 3
BIND_VIRQ, VIRQ_TIMER = 1, 0
EVTCHN_MASK = 0xFC410000 + 2176
SCRATCH = r"""
    .balign 4096
buf:    .skip 4096
info_page: .skip 4096
"""


@pytest.fixture
def three(idle_guest):
    """Three vCPUs, 1 and 2 initialised and up; vCPU 0 on the CPU."""
    booted = boot(idle_guest, vcpus=3)
    for vcpu in (1, 2):
        assert vcpu_op(booted, INITIALISE, vcpu, context(booted)) == 0
        assert vcpu_op(booted, UP, vcpu) == 0
    return booted


def running(booted) -> int:
    return booted.domain.vcpu.id


def test_runnable_vcpus_take_turns_in_id_order(three):
    scheduler = three.domain.scheduler
    order = []
    for _ in range(6):
        assert scheduler.schedule()
        order.append(running(three))
    assert order == [1, 2, 0, 1, 2, 0]


def test_a_blocked_or_down_vcpu_is_skipped(three):
    scheduler, (_, vcpu1, vcpu2) = three.domain.scheduler, three.domain.vcpus
    scheduler.block(vcpu1)
    scheduler.take_down(vcpu2)
    assert [scheduler.schedule() and running(three) for _ in range(3)] == [0, 0, 0]
    vcpu1.unblock(three.domain.events.now_ns())
    assert scheduler.schedule() and running(three) == 1


def bind_timer(booted, vcpu: int) -> int:
    booted.write("buf", struct.pack("<III", VIRQ_TIMER, vcpu, 0))
    assert hypercall(booted, HC.event_channel_op, BIND_VIRQ, booted.guest["buf"]) == 0
    return struct.unpack("<I", booted.memory.read_phys(booted.guest["buf"] + 8, 4))[0]


def block_all(booted) -> None:
    for vcpu in booted.domain.vcpus:
        booted.domain.scheduler.block(vcpu)


def singleshot(booted, vcpu: int, deadline_ns: int) -> None:
    """VCPU's own single-shot timer, set from VCPU (Xen allows no other caller)."""
    booted.domain.scheduler.switch_to(booted.domain.vcpus[vcpu])
    timer = struct.pack("<QI", deadline_ns, 0)
    assert vcpu_op(booted, SET_SINGLESHOT_TIMER, vcpu, timer) == 0


def test_with_none_runnable_time_moves_to_the_timer_that_wakes_one(three):
    bind_timer(three, 2)
    singleshot(three, 2, 2_000_000)
    block_all(three)
    clock = three.machine.clock
    assert not three.domain.scheduler.schedule()  # time moved on, nobody ran
    assert clock.insns == 200_000  # 2 ms at 100 MHz
    assert three.domain.scheduler.schedule() and running(three) == 2


def test_a_timer_on_a_masked_port_wakes_nobody_and_the_run_stops(three):
    port = bind_timer(three, 1)
    three.memory.write_phys(EVTCHN_MASK, struct.pack("<I", 1 << port))
    singleshot(three, 1, 1_000_000)
    block_all(three)
    assert not three.domain.scheduler.schedule()
    stop = three.machine.stop
    assert stop.kind is StopKind.HALTED
    assert stop.reason == "every vCPU is blocked and nothing can wake them"
    assert three.machine.clock.insns == 0


def test_a_blocked_vcpus_periodic_timer_does_not_wake_it(three):
    """Xen stops a vCPU's periodic timer when it leaves the CPU (sched_context_switch):
    a domain whose vCPUs all block with only periodic timers sleeps for ever."""
    bind_timer(three, 1)
    assert vcpu_op(three, SET_PERIODIC_TIMER, 1, struct.pack("<Q", 1_000_000)) == 0
    block_all(three)
    assert not three.domain.scheduler.schedule()
    assert three.machine.stop.reason == "every vCPU is blocked and nothing can wake them"
    assert three.machine.clock.insns == 0


def test_an_event_for_a_blocked_vcpu_that_is_down_leaves_it_offline(three):
    scheduler, vcpu2 = three.domain.scheduler, three.domain.vcpus[2]
    scheduler.block(vcpu2)
    scheduler.take_down(vcpu2)
    vcpu2.unblock(three.domain.events.now_ns())
    assert vcpu2.runstate.state == OFFLINE and not vcpu2.runnable
    scheduler.bring_up(vcpu2)
    assert vcpu2.runstate.state == RUNNABLE and vcpu2.runnable
