"""Per-operation costs, in the shape of Adams and Agesen's nanobenchmarks (ASPLOS 2006):
a guest that prints `nanobench: <operation> n=<count> cycles=<total>` lines (guests/
nanobench) gets, for each operation and mode, the cycles per operation, the factor
to native, and for PV the cost in null hypercalls (the tiny Xen kernel's line, timed
around each run: bench/workloads.py). A guest is recognised by its output, never by
its name.

cycles is the guest's rdtsc delta. Under pvtool rdtsc is Unicorn's, which reads the
host's time-stamp counter: host cycles, every exit to pvtool's Python included."""

import re
import statistics
from dataclasses import dataclass

LINE = re.compile(rb"^nanobench: (?P<op>[a-z_0-9]+) n=(?P<n>\d+) cycles=(?P<cycles>\d+)\r?$",
                  re.MULTILINE)


def line_head(op: str, n: int) -> bytes:
    """What a line says before its cycles, for a guest built here (bench/tinyxen.py)."""
    return f"nanobench: {op} n={n} cycles=".encode()


@dataclass(frozen=True)
class Operation:
    """One operation's line: N operations took CYCLES time-stamp-counter cycles."""

    n: int
    cycles: int

    @property
    def cycles_per_op(self) -> float | None:
        return self.cycles / self.n if self.n > 0 else None


def parse_operations(output: bytes) -> dict[str, Operation]:
    """Every `nanobench: OP n=N cycles=C` line of a guest's output, in output order
    (a later line for the same operation wins); {} for any other guest."""
    return {match["op"].decode(): Operation(int(match["n"]), int(match["cycles"]))
            for match in LINE.finditer(output)}


def summarize(runs: list[dict[str, Operation]],
              null_cycles: list[float] | None = None) -> dict[str, dict]:
    """One mode's repeats: per operation, n, the median cycles and the median cycles
    per operation (over the runs that printed it). NULL_CYCLES, if given, are a null
    hypercall's cycles timed around each run: null_hypercalls is the median of the
    runs' ratios. factor_to_native is set later."""
    names = list(dict.fromkeys(op for run in runs for op in run))
    nulls = null_cycles or [None] * len(runs)
    summary = {}
    for name in names:
        figures = [run[name] for run in runs if name in run]
        per_op = [f.cycles_per_op for f in figures if f.cycles_per_op is not None]
        in_nulls = [run[name].cycles_per_op / null for run, null in zip(runs, nulls, strict=True)
                    if name in run and run[name].cycles_per_op is not None and null]
        summary[name] = {
            "n": figures[-1].n,
            "cycles": round(statistics.median(f.cycles for f in figures)),
            "cycles_per_op": round(statistics.median(per_op), 2) if per_op else None,
            "factor_to_native": None,
            "null_hypercalls": round(statistics.median(in_nulls), 3) if in_nulls else None,
        }
    return summary


def operations_table(modes: dict[str, dict[str, dict] | None]) -> dict[str, dict]:
    """operations[op][mode] from each mode's summary (None for a mode that did not run);
    a mode that ran but printed no line for an operation gets None there."""
    names = list(dict.fromkeys(op for summary in modes.values() if summary
                               for op in summary))
    table: dict[str, dict] = {}
    for name in names:
        native = (modes.get("native") or {}).get(name)
        base = native["cycles_per_op"] if native else None
        row = {}
        for mode, summary in modes.items():
            figure = dict(summary[name]) if summary and name in summary else None
            if figure is not None and base and figure["cycles_per_op"] is not None:
                figure["factor_to_native"] = round(figure["cycles_per_op"] / base, 3)
            row[mode] = figure
        table[name] = row
    return table
