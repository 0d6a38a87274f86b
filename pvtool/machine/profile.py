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

An exit can also be labelled: a counter from `labels` (the domain's hypercalls by
number) notes each count too, and the exit being handled when it is counted takes its
first such label, so a hypercall exit's time is also its hypercall's, by name. Only
the first: a multicall's entries are counted inside its exit, which stays the
multicall's. So the hypercall rows by name add up to the hypercall kind's row.
Each exit is also kept as a record, in order (`records`), for a reader that needs the
times of particular exits: the bench's exits per operation (bench/opexits.py).

Nothing here runs unless the run is profiled: the machine installs its hooks bare and
keeps a plain Counter otherwise, so an unprofiled run makes no timing call at all.
"""

from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns
from typing import NamedTuple

RUN_LOOP = "run loop"  # the run loop's Python between slices, no exit counted in it
NS_PER_US = 1000
_LEAD = object()  # a hook's owner until its first count: that first exit


class Label(NamedTuple):
    """Noted beside the exits: the exit of KIND being handled is KEY's."""

    kind: str
    key: object


class NotedExits(Counter):
    """The machine's exit counter while profiling: every count is also noted, with
    the time it was made, for the profile to share out the span it falls in."""

    def __init__(self, noted: list):
        super().__init__()
        self._noted = noted

    def __setitem__(self, kind, count) -> None:
        super().__setitem__(kind, count)
        self._noted.append((kind, perf_counter_ns()))


class ExitRecord(NamedTuple):
    """One exit: its kind, its label's name (None if unlabelled), its host time."""

    kind: str
    name: str | None
    ns: int


class NotedLabels(Counter):
    """A count by KEY (a hypercall's number) made while exits of KIND are handled:
    every count is also noted, to label the exit it falls in."""

    def __init__(self, noted: list, kind: str):
        super().__init__()
        self._noted = noted
        self._kind = kind

    def __setitem__(self, key, count) -> None:
        super().__setitem__(key, count)
        self._noted.append((Label(self._kind, key), perf_counter_ns()))


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
        self.labelled: dict[tuple[str, object], KindTime] = {}  # by (kind, label)
        # every exit in order, compactly (a run may make millions): a code for its
        # (kind, label) and its host nanoseconds
        self._codes: dict[tuple[str, object], int] = {}
        self._record_codes = array("I")
        self._record_ns = array("q")
        self._label_names: dict[str, Callable[[object], str]] = {}
        self.emulate_ns = 0  # inside emu_start, hooks included
        self.hooks_ns = 0  # the hooks' Python inside emu_start
        self.wall_ns = 0
        self._started = self._mark = 0
        self._depth = 0  # hooks nest: an MMIO access or a trampoline inside a hook

    def labels(self, kind: str, name: Callable[[object], str]) -> Counter:
        """A counter whose keys label the exits of KIND they are counted in (the
        hypercall exits, by the number the domain counts); NAME names a key in the
        figures."""
        self._label_names[str(kind)] = name
        return NotedLabels(self.noted, str(kind))

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
        """Give [BEGIN, END) to the exits noted in it, cut at each count, each exit's
        time with its first label; time before the first count is the first exit's if
        LEAD, else FALLBACK's. With no count, all of it is FALLBACK's (a hook that
        counts none is a row of its own)."""
        at, owner, label, spent = begin, _LEAD if lead else fallback, None, 0
        for kind, when in self.noted:
            when = min(max(when, at), end)
            spent, at = spent + when - at, when
            if type(kind) is Label:
                if label is None and kind.kind == owner:
                    label = kind.key
                continue
            if owner is not _LEAD:  # else the time so far is this first exit's
                if owner is fallback:
                    self._add_time(fallback, spent)
                else:
                    self._exit_done(owner, label, spent)
                spent = 0
            self._count(kind)
            owner, label = kind, None
        if owner is _LEAD:
            owner = fallback
            self.uncounted.add(fallback)
            self._count(fallback)
        if owner is fallback:
            self._add_time(fallback, spent + end - at)
        else:
            self._exit_done(owner, label, spent + end - at)
        self.noted.clear()

    def _count(self, kind: str) -> None:
        self.kinds.setdefault(str(kind), KindTime()).count += 1

    def _add_time(self, kind: str, ns: int) -> None:
        self.kinds.setdefault(str(kind), KindTime()).ns += ns

    def _exit_done(self, kind: str, label: object, ns: int) -> None:
        """One exit of KIND, labelled LABEL (or None), took NS: its kind's time, its
        label's, and its record."""
        self._add_time(kind, ns)
        key = (str(kind), label)
        if label is not None:
            row = self.labelled.setdefault(key, KindTime())
            row.count += 1
            row.ns += ns
        code = self._codes.setdefault(key, len(self._codes))
        self._record_codes.append(code)
        self._record_ns.append(ns)

    def records(self) -> list[ExitRecord]:
        """Every exit of the run in the order they ended, each with its host time."""
        keys = list(self._codes)
        return [ExitRecord(keys[code][0], self._label_name(*keys[code]), ns)
                for code, ns in zip(self._record_codes, self._record_ns, strict=True)]

    def _label_name(self, kind: str, label: object) -> str | None:
        return None if label is None else self._label_names.get(kind, str)(label)

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
            "labels": self._label_rows(),
        }

    def _label_rows(self) -> list[dict]:
        """The labelled exits by kind and label, costliest first within a kind."""
        rows = sorted(self.labelled.items(), key=lambda item: (item[0][0], -item[1].ns))
        return [{"kind": kind, "name": self._label_name(kind, key),
                 "count": row.count, "total_us": round(row.ns / NS_PER_US, 3),
                 "mean_us": round(row.ns / NS_PER_US / row.count, 3)}
                for (kind, key), row in rows]
