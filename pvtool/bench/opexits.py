"""Issue 17's goal 5: per nanobench operation and per mode, the exits the operation
takes, by kind, and their host cost.

A run's profile (machine/profile.py) covers the whole run: the boot, every
operation, their setup and the lines printed. To tell one operation's exits from the
rest, the bench takes differences of runs that differ only in that operation's
iteration count: nanobench takes its counts from the command line (guests/nanobench/
nanobench.h), so an operation runs alone, every other count 0, once COUNT times
(`n=0 OP=COUNT`) and once twice that. Both runs boot, set up and print the same bytes
but for the digits of n, which COUNT keeps the same width (the console's port I/O is
an exit a byte: a longer line would add its exits to the difference; the runs'
outputs are checked to be as long); with the virtual TSC (each run's default) a run is
deterministic, so the difference of the two runs' exit counts is exactly COUNT more
iterations, and over the difference of the n the lines print (a ctxswitch round is two
switches) it is the exits one operation takes. Why not the profile of one run cut at
the operations' lines: the exits between two lines include the next operation's setup
and the line's own port I/O.

Both runs are profiled, and the profile keeps each exit's host time in order
(machine/profile.py). The two runs make the same exits up to where the shorter one
stops looping; from there the longer one makes its extra exits, as many as it makes
more in all: those are COUNT iterations of the operation, so an exit kind's host cost
per operation is the host time of the extra exits of that kind over the operations,
and a hypercall's, by name, the same of the extra hypercalls of that name (the mean of
the hypercalls the operation makes, times how many it makes). Neither a kind's mean
over the whole run nor the difference of the two runs' totals would do: the boot's
few page-table hypercalls (whole tables pinned and validated) take longer than a
hundred operations' do (a pte_update's mmuext_op showed 588 us by its kind's mean),
and the difference of the totals was the machine's noise (measured negative).

A guest that ignores the counts (with n=0 it still runs other operations, or it runs
no more of one when asked for more) gets why, not figures."""

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pvtool.bench.operations import Operation, parse_operations
from pvtool.bench.workloads import RUN_TIMEOUT, ModeRuns, guest_passed
from pvtool.errors import PvtoolError
from pvtool.machine.profile import NS_PER_US, ExitRecord
from pvtool.run import Mode, RunOptions, RunResult, run_image

COUNT = 100  # an operation's iterations in the shorter run: 100 and 200 (and a ctxswitch
# line's 200 and 400 switches) print as many digits
METHOD = (f"difference of two profiled runs, virtual TSC, the operation alone at {COUNT} "
          f"and at {2 * COUNT}: exits exact; host us: the longer run's extra exits' own "
          "host time, over the extra operations")


class OperationRuns:
    """One profiled run: its exits, hypercalls, profile and operation lines."""

    def __init__(self, result: RunResult, output: bytes):
        self.exits = result.exits
        self.hypercalls = result.hypercalls
        self.profile = result.profile.to_dict()
        self.lines: dict[str, Operation] = parse_operations(output)
        self.output_bytes = len(output)
        self.records = result.profile.records()


def printed_operations(runs: ModeRuns) -> list[str]:
    """The operations one mode's last timed run printed ([] if it did not run)."""
    return list(runs.operations[-1]) if runs.ok and runs.operations else []


def operation_exits_table(by_mode: dict[Mode, dict | None], costs: dict | None = None,
                          tsc_hz: float | None = None) -> dict:
    """{"method", "count", "errors": {mode: why}, "operations": {op: {mode: figures}}}
    from each mode's opexits result ({} when no mode printed nanobench lines). With
    COSTS (bench/operations.py's table of the timed runs) and the host's TSC_HZ, each
    figure also has the whole operation's host us by its own rdtsc, rdtsc_us_per_op."""
    ran = {mode.value: figures for mode, figures in by_mode.items() if figures is not None}
    if not ran:
        return {}
    first = next(iter(ran.values()))
    names = list(dict.fromkeys(op for figures in ran.values() for op in figures["operations"]))
    operations = {op: {mode: _with_rdtsc_us(figures["operations"].get(op),
                                            (costs or {}).get(op, {}).get(mode), tsc_hz)
                       for mode, figures in ran.items()} for op in names}
    return {"method": first["method"], "count": first["count"],
            "errors": {mode: figures["error"] for mode, figures in ran.items()
                       if figures["error"]},
            "operations": operations}


def _with_rdtsc_us(figure: dict | None, cost: dict | None, tsc_hz: float | None) -> dict | None:
    """FIGURE with the operation's cycles in COST over TSC_HZ, in us (None if either
    is missing): the check on its exits' host us, which leave out the guest code."""
    if figure is None:
        return None
    cycles = cost["cycles_per_op"] if cost else None
    us = cycles / tsc_hz * 1e6 if cycles is not None and tsc_hz else None
    return figure | {"rdtsc_us_per_op": round(us, 3) if us is not None else None}


def operation_exits(mode: Mode, image: Path, operations: list[str]) -> dict:
    """OPERATIONS (the names IMAGE printed) each run alone in MODE, COUNT times and
    twice that: {"method", "count", "error", "operations": {op: figures}}; at the
    first operation that cannot be measured, its error and no figures."""
    runner = _runner(mode, image)
    figures = {}
    for name in operations:
        try:
            short, long = (runner(f"n=0 {name}={count}") for count in (COUNT, 2 * COUNT))
        except _NotRun as exc:
            return _result(str(exc), {})
        error = _unequal_runs(name, short, long)
        if error:
            return _result(error, {})
        figures[name] = per_operation(short, long, long.lines[name].n - short.lines[name].n)
    return _result(None, figures)


def _result(error: str | None, figures: dict) -> dict:
    return {"method": METHOD, "count": COUNT, "error": error, "operations": figures}


def per_operation(short: OperationRuns, long: OperationRuns, n: int) -> dict:
    """LONG less SHORT over the N operations more it ran: exits and hypercalls by
    kind, the exits' host microseconds by kind and in all, and the hypercall exits
    and their host microseconds by hypercall."""
    extra = extra_exits(short, long)
    exits = _difference(long.exits, short.exits, n)
    host_us = _host_us(extra, "kind", n)
    hypercalls = [record for record in extra if record.name is not None]
    return {
        "n": n,
        "exits": exits,
        "exits_per_op": round(sum(exits.values()), 4),
        "hypercalls": _difference(long.hypercalls, short.hypercalls, n),
        "host_us": host_us,
        "host_us_per_op": round(sum(host_us.values()), 3),
        # by the hypercall each exit was (a multicall's entries are inside its exit)
        "hypercall_exits": {name: round(count / n, 4) for name, count
                            in sorted(Counter(r.name for r in hypercalls).items())},
        "hypercall_host_us": _host_us(hypercalls, "name", n),
    }


def extra_exits(short: OperationRuns, long: OperationRuns) -> list[ExitRecord]:
    """The exits LONG makes beyond SHORT's: from where the two runs' exits first
    differ (by kind and label), as many as LONG makes more."""
    same = 0
    for mine, theirs in zip(short.records, long.records, strict=False):
        if (mine.kind, mine.name) != (theirs.kind, theirs.name):
            break
        same += 1
    return long.records[same:same + len(long.records) - len(short.records)]


def _host_us(records: list[ExitRecord], field: str, n: int) -> dict[str, float]:
    """Per operation, the host microseconds of RECORDS by their FIELD."""
    total: Counter[str] = Counter()
    for record in records:
        total[getattr(record, field)] += record.ns
    return {key: round(ns / NS_PER_US / n, 3) for key, ns in sorted(total.items())}


def _difference(counts: dict, base: dict, n: int) -> dict[str, float]:
    """Per operation, the kinds whose count changed (an exact count is a whole number
    of exits an operation, or a fraction when a loop's work is shared out)."""
    kinds = sorted(set(counts) | set(base))
    deltas = {str(kind): counts.get(kind, 0) - base.get(kind, 0) for kind in kinds}
    return {kind: round(delta / n, 4) for kind, delta in deltas.items() if delta}


def _unequal_runs(name: str, short: OperationRuns, long: OperationRuns) -> str | None:
    """Why the difference of the two runs of operation NAME would not be its own: the
    guest did not take the counts asked, or the runs printed lines of other lengths."""
    others = [op for op, line in short.lines.items() if op != name and line.n]
    if others:
        return (f"the guest ignores the counts on its command line: with n=0 it still "
                f"ran {', '.join(others)}")
    lines = short.lines.get(name), long.lines.get(name)
    if None in lines or lines[0].n == lines[1].n:
        return f"the guest ran no more {name} when asked {name}={2 * COUNT} than {COUNT}"
    if short.output_bytes != long.output_bytes:
        return (f"{name}: the runs at {COUNT} and {2 * COUNT} printed {short.output_bytes} "
                f"and {long.output_bytes} bytes: the difference would count the console's")
    extra = Counter(record.kind for record in extra_exits(short, long))
    if extra != _difference(long.exits, short.exits, 1):
        return (f"{name}: the run at {2 * COUNT} makes other exits than the one at {COUNT}, "
                "not only more: its extra exits cannot be told apart")
    return None


class _NotRun(Exception):
    pass


def _runner(mode: Mode, image: Path) -> Callable[[str], OperationRuns]:
    """A function booting IMAGE in MODE with a command line, profiled; it raises
    _NotRun with why when a run fails or the guest does not pass."""
    def run(cmdline: str) -> OperationRuns:
        output = bytearray()
        options = RunOptions(mode=mode, timeout=RUN_TIMEOUT, profile=True,
                             cmdline=cmdline.encode())
        try:
            result = run_image(image, options, output.extend)
        except PvtoolError as exc:
            raise _NotRun(f"{cmdline}: {exc.message}") from None
        if not guest_passed(result):
            raise _NotRun(f"{cmdline}: {result.stop.describe()}")
        return OperationRuns(result, bytes(output))

    return run
