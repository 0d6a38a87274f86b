"""Timing helpers shared by the probes: a median of repeats, kept with its runs."""

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of repeated runs of the same thing."""

    runs: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def to_dict(self) -> dict:
        return {"median": round(self.median, 6), "min": round(min(self.runs), 6),
                "max": round(max(self.runs), 6), "runs": [round(r, 6) for r in self.runs]}


def time_runs(run: Callable[[], object], repeat: int) -> Timing:
    """Call RUN REPEAT times (after whatever warm-up the caller did) and time each."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        runs.append(time.perf_counter() - started)
    return Timing(tuple(runs))


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0
