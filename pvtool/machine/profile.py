"""`pvtool run --profile`: where a run's host time went, as xentrace and perf show a
hypervisor's, by exit kind (count, total and mean host time) and split between the
emulator running guest code and pvtool's Python.

The run loop's wall time is cut into spans that cover it exactly once:
- inside emu_start, each hook's Python (a timing wrapper around every hook the machine
  installs); the rest of emu_start is the emulator's, the entry of each callback into
  Python included (the ctypes transition an empty hook costs);
- between slices, the run loop's own Python (interrupts taken, timers moved on, hlt).

Each span goes to the exit kinds counted during it (the machine's exit counter notes
every count with its time, while profiling): a span that counted one kind is that
kind's; one that counted several (a hypercall whose return delivers an event upcall)
is cut at each count. A hook's time before its first count is that first kind's (the
exit is why the hook ran); the run loop's is its own ("run loop"). A hook that counts
no exit (rdtsc, cpuid) is shown under its own name, apart from the exits.

Nothing here runs unless the run is profiled: the machine installs its hooks bare and
keeps a plain Counter otherwise, so an unprofiled run makes no timing call at all.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns

RUN_LOOP = "run loop"  # the run loop's Python between slices, no exit counted in it
NS_PER_US = 1000


class NotedExits(Counter):
    """The machine's exit counter while profiling: every count is also noted, with
    the time it was made, for the profile to share out the span it falls in."""

    def __init__(self, noted: list):
        super().__init__()
        self._noted = noted

    def __setitem__(self, kind, count) -> None:
        super().__setitem__(kind, count)
        self._noted.append((kind, perf_counter_ns()))


@dataclass
class KindTime:
    """One row of the profile: how many times, and how long in host nanoseconds."""

    count: int = 0
    ns: int = 0


class Profile:
    """Host time of one run, by exit kind and by side (emulator or Python)."""

    def __init__(self):
        self.noted: list[tuple[str, int]] = []
        self.exits = NotedExits(self.noted)
        self.kinds: dict[str, KindTime] = {}
        self.uncounted: set[str] = set()  # rows that are hooks, not exits
        self.emulate_ns = 0  # inside emu_start, hooks included
        self.hooks_ns = 0  # the hooks' Python inside emu_start
        self.wall_ns = 0
        self._started = self._mark = 0
        self._depth = 0  # hooks nest: an MMIO access or a trampoline inside a hook

    # -- the machine and the run loop call these --------------------------------------
    def start(self) -> None:
        """The run loop begins: counts made while booting are kept, with no time."""
        self._share(0, 0, RUN_LOOP, lead=False)
        self._started = self._mark = perf_counter_ns()

    def emulate(self, run: Callable[[], None]) -> None:
        """RUN (one emu_start) timed; the run loop's time before it is the run loop's.
        Before the run loop starts (the boot's trampolines) nothing is timed."""
        if not self._started:
            run()
            return
        begin = perf_counter_ns()
        self._between_slices(begin)
        try:
            run()
        finally:
            self._mark = perf_counter_ns()
            self.emulate_ns += self._mark - begin

    def finish(self) -> None:
        end = perf_counter_ns()
        self._between_slices(end)
        self.wall_ns = end - self._started

    def _between_slices(self, end: int) -> None:
        """The run loop's Python since the last slice (or the start): one count of
        RUN_LOOP, its time less what the exits counted in it took."""
        self._count(RUN_LOOP)
        self._share(self._mark, end, RUN_LOOP, lead=False)

    def timed(self, callback: Callable, name: str) -> Callable:
        """CALLBACK, a hook, with its time shared out to the exits it counts (NAME's
        when it counts none)."""
        def hook(*args):
            if self._depth or not self._started:
                return callback(*args)
            self._depth = 1
            begin = perf_counter_ns()
            try:
                return callback(*args)
            finally:
                end = perf_counter_ns()
                self._depth = 0
                self.hooks_ns += end - begin
                self._share(begin, end, name, lead=True)

        return hook

    def _share(self, begin: int, end: int, fallback: str, *, lead: bool) -> None:
        """Give [BEGIN, END) to the kinds noted in it, cut at each count; time before
        the first count is the first kind's if LEAD, else FALLBACK's. With no count,
        all of it is FALLBACK's."""
        noted = self.noted
        if not noted:
            if lead:
                self.uncounted.add(fallback)
                self._count(fallback)
            self._add_time(fallback, end - begin)
            return
        at = begin
        owner = None if not lead else noted[0][0]
        for kind, when in noted:
            when = min(max(when, at), end)
            if owner is not None:
                self._add_time(owner, when - at)
            elif when > at:
                self._add_time(fallback, when - at)
            self._count(kind)
            owner, at = kind, when
        self._add_time(owner, end - at)
        noted.clear()

    def _count(self, kind: str) -> None:
        self.kinds.setdefault(str(kind), KindTime()).count += 1

    def _add_time(self, kind: str, ns: int) -> None:
        self.kinds.setdefault(str(kind), KindTime()).ns += ns

    # -- the figures --------------------------------------------------------------------
    @property
    def emulator_ns(self) -> int:
        """Guest code in the emulator: emu_start less the hooks' Python."""
        return self.emulate_ns - self.hooks_ns

    @property
    def python_ns(self) -> int:
        return self.wall_ns - self.emulator_ns

    def to_dict(self) -> dict:
        wall = self.wall_ns or 1
        rows = sorted(self.kinds.items(), key=lambda item: (-item[1].ns, item[0]))
        return {
            "wall_us": round(self.wall_ns / NS_PER_US, 3),
            "emulator_us": round(self.emulator_ns / NS_PER_US, 3),
            "python_us": round(self.python_ns / NS_PER_US, 3),
            "emulator_share": self.emulator_ns / wall,
            "python_share": self.python_ns / wall,
            "kinds": [{"kind": kind, "exit": kind not in self.uncounted and kind != RUN_LOOP,
                       "count": row.count, "total_us": round(row.ns / NS_PER_US, 3),
                       "mean_us": round(row.ns / NS_PER_US / row.count, 3)
                       if row.count else 0.0,
                       "share": row.ns / wall} for kind, row in rows],
        }
