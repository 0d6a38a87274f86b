"""A vCPU's runstate (public/vcpu.h, struct vcpu_runstate_info): which of running,
runnable, blocked and offline it is in, since when (system time in ns), and how long it
has spent in each, as Xen's vcpu_runstate_change keeps them (xen/common/sched/core.c).
"""

from dataclasses import dataclass, field

from pvtool.abi.layouts import VCPU_RUNSTATE_INFO, Layout
from pvtool.abi.xen import RunstateState


@dataclass
class Runstate:
    state: RunstateState
    entry_time: int = 0  # ns of system time when it entered STATE
    time: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # ns per state
    layout: Layout = VCPU_RUNSTATE_INFO  # the guest's width's (abi/xen64.py: 48 bytes)

    def change(self, state: RunstateState, now: int) -> None:
        """Leave the current state at NOW, its time accounted, and enter STATE."""
        if state == self.state:
            return
        self.time[self.state] += max(now - self.entry_time, 0)
        self.state, self.entry_time = state, now

    def info(self, now: int) -> bytes:
        """vcpu_runstate_info as VCPUOP_get_runstate_info answers at NOW: the current
        state's time counts up to NOW (vcpu_runstate_get), its entry time does not
        move."""
        time = list(self.time)
        time[self.state] += max(now - self.entry_time, 0)
        return self.layout.pack(state=int(self.state), state_entry_time=self.entry_time,
                                       time=tuple(time))
