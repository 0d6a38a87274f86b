"""The domain's vCPUs on the one emulated CPU: deterministic round-robin time slicing.

pvtool runs every vCPU of a domain on one host thread and one Unicorn CPU. Before each
slice the run loop asks the scheduler which vCPU runs (`schedule`): the next one after
the running vCPU, in vCPU-id order and wrapping, that is up and not blocked; the
running one again if it is the only one. A vCPU's slice ends after QUANTUM
instructions, at the next timer event, or when it blocks (SCHEDOP_block, poll), so the
interleaving depends on instruction counts only and a run is the same every time.

A vCPU that is not on the CPU keeps its registers in a saved CPU context (Cpu.
save_context: Unicorn's context_save into the vCPU's own buffer, context_restore to
put it back), and its page-table bases (a 64-bit vCPU's user L4 too). A 64-bit vCPU
put on the CPU then has its data selectors reloaded, as Xen's load_segments does
(LOAD_SEGMENTS, hv/bounce64.py: the failsafe callback when one cannot be).
Virtual time is the machine's, shared: it moves on with every slice whichever vCPU
ran it, as one physical CPU's time does under Xen's scheduler.

A vCPU's periodic timer runs only while it has the CPU, as Xen's context switch
stops and restarts it (hv/events.py): it stops here when the vCPU leaves the CPU,
and starts again before the vCPU's next slice (PvSupervisor.take_interrupt).

When no vCPU can run, time moves on to the next event that can wake one (a timer
whose VIRQ_TIMER is bound on its vCPU, a poll's timeout, a device timer); with none
left, the run stops: every vCPU is down or blocked for ever.

Runstates follow Xen's vcpu_runstate_change (xen/common/sched/core.c): running on
the CPU, runnable while waiting for it, blocked, offline while down; a registered
runstate area is rewritten at each switch, as Xen's update_runstate_area does on
context switch.
"""

from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING

from pvtool.abi.xen import RunstateState, Virq
from pvtool.hv.errors import HypercallError
from pvtool.hv.events import timer_deadlines
from pvtool.machine.exits import Exit
from pvtool.machine.stop import Stop, StopKind

if TYPE_CHECKING:
    from pvtool.hv.domain import PvDomain, VCpu

QUANTUM = 50_000  # instructions a vCPU runs before the next runnable one gets the CPU


class VcpuScheduler:
    def __init__(self, domain: "PvDomain"):
        self.domain = domain
        self.machine = domain.machine
        self.cpu = domain.machine.cpu
        # A 64-bit domain's: Xen's load_segments for the vCPU just switched in.
        self.load_segments: Callable[[VCpu], None] | None = None

    @property
    def active(self) -> bool:
        """Whether there is anything to schedule: a domain with one vCPU runs as it
        always has (SCHEDOP_block ends the slice and the run loop waits)."""
        return len(self.domain.vcpus) > 1

    def now(self) -> int:
        return self.domain.events.now_ns()

    # -- the run loop's questions ---------------------------------------------------
    def schedule(self) -> bool:
        """Put the next runnable vCPU on the CPU (True). With none, move time on to
        the next event that may wake one and say False (the run loop asks again), or
        stop the run when nothing can: every vCPU down or blocked for ever."""
        self.domain.events.fire_due_timer()
        self._wake_for_device_interrupt()
        chosen = self._next_runnable()
        if chosen is not None:
            self.switch_to(chosen)
            return True
        wait = self._insns_to_wakeup()
        if wait is None:
            self._stop_idle()
        else:
            self.machine.exits[Exit.HLT] += 1
            self.machine.advance(wait)
        return False

    def insns_to_next_event(self) -> int | None:
        """The running vCPU's slice ends at its quantum or at any vCPU's timer."""
        wait = self.domain.events.insns_to_timer(self.domain.vcpus)
        return QUANTUM if wait is None else min(wait, QUANTUM)

    # -- blocking -------------------------------------------------------------------
    def block(self, vcpu: "VCpu") -> None:
        """VCPU waits for an event: off the CPU at the end of this instruction."""
        vcpu.blocked = True
        vcpu.runstate.change(RunstateState.blocked, self.now())
        self.domain.events.pause_periodic(vcpu)
        self.machine.end_slice()

    def take_down(self, vcpu: "VCpu") -> None:
        """VCPUOP_down: VCPU stops until VCPUOP_up; if it is running, at once."""
        vcpu.up = False
        vcpu.runstate.change(RunstateState.offline, self.now())
        self.domain.events.pause_periodic(vcpu)
        if vcpu is self.domain.vcpu:
            self.machine.end_slice()

    def bring_up(self, vcpu: "VCpu") -> None:
        """VCPUOP_up: VCPU runs again, runnable until it gets the CPU."""
        if not vcpu.up:
            vcpu.up = True
            vcpu.runstate.change(RunstateState.blocked if vcpu.blocked
                                 else RunstateState.runnable, self.now())

    # -- switching ------------------------------------------------------------------
    def switch_to(self, chosen: "VCpu") -> None:
        current = self.domain.vcpu
        if chosen is current:
            return
        now = self.now()
        if current.runstate.state == RunstateState.running:
            current.runstate.change(RunstateState.runnable, now)
        tables = self.domain.pagetables
        current.context = self.cpu.save_context(current.context)
        current.base_mfn = tables.base_mfn
        if current.long_mode is not None:
            current.long_mode.user_base_mfn = tables.user_base_mfn
        self.domain.events.pause_periodic(current)  # restarted as its next slice starts
        self.write_runstate_area(current)
        self.domain.vcpu = chosen
        starting = chosen.start_state is not None
        if starting:
            chosen.start_state()  # hv/vcpu_context.py: its first registers
            chosen.start_state = chosen.context = None
        else:
            self.cpu.restore_context(chosen.context)
        self._load_tables(chosen)
        if self.load_segments is not None:
            self.load_segments(chosen)
        chosen.runstate.change(RunstateState.running, now)
        self.domain.events.update_time(chosen)  # an up-to-date time base (context_switch)
        self.write_runstate_area(chosen)
        self.machine.exits[Exit.VCPU_SWITCH] += 1
        if self.domain.trace:
            self.domain.log("first run (VCPUOP_initialise's context)" if starting
                            else f"scheduled at {chosen.eip:#x}")

    def write_runstate_area(self, vcpu: "VCpu") -> None:
        """The vCPU's runstate into its registered area: a bad address is the guest's
        loss, not an error (update_runstate_area ignores a failed copy)."""
        if vcpu.runstate_area is None:
            return
        with suppress(HypercallError):
            self.domain.copy_to_guest(vcpu.runstate_area, vcpu.runstate.info(self.now()))

    def _load_tables(self, vcpu: "VCpu") -> None:
        """Its own bases, which it holds, whatever CR3 its saved context had: a 64-bit
        vCPU's user L4 too, and CR3 as its mode wants (Xen's update_cr3)."""
        tables = self.domain.pagetables
        tables.load_base(vcpu.base_mfn)
        state = vcpu.long_mode
        if state is not None:
            tables.user_base_mfn = state.user_base_mfn
            if not state.kernel_mode:
                tables.load_cr3(user=True)

    def _next_runnable(self) -> "VCpu | None":
        vcpus = self.domain.vcpus
        first = self.domain.vcpu.id + 1
        for step in range(len(vcpus)):
            vcpu = vcpus[(first + step) % len(vcpus)]
            if vcpu.runnable:
                return vcpu
        return None

    def _insns_to_wakeup(self) -> int | None:
        """Instructions until an event that can wake a vCPU that is up: a timer raising
        a VIRQ_TIMER bound on its vCPU, a poll's timeout, or a device's timer."""
        events = self.domain.events
        deadlines = [d for vcpu in self.domain.vcpus if vcpu.up
                     for d in self._waking_deadlines(vcpu)]
        waits = [events.insns_until(min(deadlines))] if deadlines else []
        for timer in self.machine.timers:
            wait = timer.insns_to_next_irq()
            if wait is not None:
                waits.append(wait)
        return min(waits) if waits else None

    def _waking_deadlines(self, vcpu: "VCpu") -> list[int]:
        """VCPU's timers if they raise an event that wakes it: VIRQ_TIMER bound on it,
        on a port it has not masked or that it polls; and its poll's timeout."""
        port = self.domain.events.virq_port(Virq.timer, vcpu.id)
        if port is not None and (not self.domain.events.is_masked(port)
                                 or vcpu.polling is not None and port in vcpu.polling):
            return timer_deadlines(vcpu)
        return [vcpu.poll_deadline] if vcpu.poll_deadline is not None else []

    def _wake_for_device_interrupt(self) -> None:
        """A device interrupt is vCPU 0's (the PV supervisor delivers it there)."""
        vcpu0 = self.domain.vcpus[0]
        if self.machine.irqs.pending() and vcpu0.blocked:
            vcpu0.unblock(self.now())

    def _stop_idle(self) -> None:
        if not any(vcpu.up for vcpu in self.domain.vcpus):
            reason = "every vCPU is down"
        else:
            reason = "every vCPU is blocked and nothing can wake them"
        self.machine.request_stop(Stop(StopKind.HALTED, reason, self.domain.vcpu.eip))
