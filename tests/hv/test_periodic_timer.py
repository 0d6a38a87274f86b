"""Xen's default periodic timer (docs/ABI.md, "vCPUs"): every PV vCPU starts with a
10 ms VIRQ_TIMER tick (pv_vcpu_initialise, "PV guests by default have a 100Hz
ticker"), which runs only while the vCPU has the CPU (sched_context_switch), and
which VCPUOP_stop_periodic_timer stops, as Linux does for each vCPU it sets up.

The guest binds VIRQ_TIMER on vCPU 0, enables events and spins for 55 ms of virtual
time (2,750,000 turns of a two-instruction loop: an instruction is 10 ns), counting
the timer events its callback takes; numbers typed from public/xen.h,
event_channel.h and vcpu.h."""

import struct

import pytest

from pvtool.run import Mode, RunOptions, _run_loop
from tests.hv.harness import boot
from tests.hv.test_vcpu_op import bind_timer, pending, vcpu_op

SET_PERIODIC_TIMER, STOP_PERIODIC_TIMER = 6, 7
SPIN_TURNS = 2_750_000  # 5.5 million instructions: 55 ms at 100 MHz
SCRATCH = r"""
    .balign 4096
buf:    .skip 4096
"""

TICKS_TEXT = r"""
    .set HC_vcpu_op, 24
    .set HC_event_channel_op, 32
    .set EVTCHNOP_bind_virq, 1
    .set VCPUOP_set_periodic_timer, 6
    .set VCPUOP_stop_periodic_timer, 7
    MAP_SHARED_INFO shinfo
    mov ebx, FLAT_RING1_CS
    mov ecx, offset upcall
    mov edx, FLAT_RING1_CS
    mov esi, offset upcall
    HYPERCALL set_callbacks
    mov ebx, {command}                  /* on vCPU 0, the period's address if any */
    xor ecx, ecx
    mov edx, offset period
    {vcpu_op}
    mov [vcpu_op_result], eax
    mov ebx, EVTCHNOP_bind_virq         /* VIRQ_TIMER (0) on vCPU 0 */
    mov ecx, offset virq_req
    HYPERCALL event_channel_op
    mov eax, [virq_req + 8]
    mov [timer_port], eax
    mov byte ptr [shinfo + VCPU_upcall_mask], 0
    mov ecx, {turns}
spin:
    dec ecx
    jnz spin
    SHUTDOWN SHUTDOWN_poweroff
"""
HANDLERS = r"""
upcall:                                 /* count VIRQ_TIMER if pending, clear it */
    push ecx
    mov byte ptr [shinfo], 0            /* evtchn_upcall_pending */
    mov dword ptr [shinfo + 4], 0       /* evtchn_pending_sel */
    mov ecx, [timer_port]
    lock btr dword ptr [shinfo + 2048], ecx
    adc dword ptr [ticks], 0
    pop ecx
    HYPERVISOR_IRET
"""
DATA = r"""
    .balign 8
period: .quad {period}
virq_req: .long 0, 0, 0
timer_port: .long 0
ticks: .long 0
vcpu_op_result: .long 0
"""
BSS = """
    .balign 4096
shinfo: .skip 4096
"""


def ticks_guest(build, command: int | None = None, period_ns: int = 0):
    call = "HYPERCALL vcpu_op" if command is not None else "nop"
    text = TICKS_TEXT.format(command=command or 0, vcpu_op=call, turns=SPIN_TURNS)
    return build(text, handlers=HANDLERS, data=DATA.format(period=period_ns), bss=BSS)


def run_ticks(guest):
    booted = boot(guest)
    result = _run_loop(booted.machine, Mode.PV, RunOptions(max_insns=20_000_000))
    assert result.stop.reason == "shutdown (poweroff)", result.stop
    return booted


def test_a_vcpu_ticks_every_10_ms_by_default(build):
    booted = run_ticks(ticks_guest(build))
    assert booted.u32("ticks") == 5  # at 10, 20, 30, 40 and 50 ms


def test_a_vcpu_that_stops_its_periodic_timer_gets_no_tick(build):
    booted = run_ticks(ticks_guest(build, STOP_PERIODIC_TIMER))
    assert booted.u32("vcpu_op_result") == 0
    assert booted.u32("ticks") == 0


def test_set_periodic_timer_changes_the_period(build):
    booted = run_ticks(ticks_guest(build, SET_PERIODIC_TIMER, 4_000_000))
    assert booted.u32("vcpu_op_result") == 0
    # Due every 4 ms from the last tick (time 0), but set inside a slice that runs to
    # the default tick's 10 ms (docs/ABI.md, "vCPUs"): at 10, 14, ..., 54 ms.
    assert booted.u32("ticks") == 12


@pytest.fixture
def one(idle_guest):
    return boot(idle_guest)


def test_the_tick_waits_while_the_vcpu_is_off_the_cpu_and_comes_at_once_after(one):
    """vcpu_periodic_timer_work: a vCPU that gets the CPU back a period or more after
    its last tick gets one at once; the next comes a period after that."""
    port = bind_timer(one, 0)
    events, vcpu = one.domain.events, one.domain.vcpu
    events.start_periodic(vcpu)
    events.pause_periodic(vcpu)  # it blocks at time 0
    one.machine.advance(2_500_000)  # 25 ms off the CPU: no tick
    events.fire_due_timer()
    assert not pending(one, port)
    events.start_periodic(vcpu)  # back on the CPU at 25 ms
    assert pending(one, port)
    assert vcpu.periodic_next == 35_000_000


def test_stop_periodic_timer_disarms_it_and_set_restarts_it(one):
    vcpu = one.domain.vcpu
    assert vcpu_op(one, STOP_PERIODIC_TIMER, 0) == 0
    assert (vcpu.periodic_period, vcpu.periodic_next) == (0, None)
    assert vcpu_op(one, SET_PERIODIC_TIMER, 0, struct.pack("<Q", 3_000_000)) == 0
    assert (vcpu.periodic_period, vcpu.periodic_next) == (3_000_000, 3_000_000)
