"""The figures of a fuzzing campaign (`make fuzz`): what the fuzz tests did and how
many invariant checks passed, added up across the tests of one pytest run and printed
at its end (tests/conftest.py).

Under pytest-xdist the tests run in worker processes, each with its own Figures: a
worker writes its figures to build/campaign/ when its session ends (record), and the
controller adds them to its own (total) for the last line. A shard's progress lines
go to build/campaign/progress.log as well as stdout, which xdist does not forward
(`tail -f` it during a campaign).
"""

import json
import time

from tests.oracles import REPO_ROOT
from tests.profiles import in_campaign

FIGURES_DIR = REPO_ROOT / "build" / "campaign"
PROGRESS_LOG = FIGURES_DIR / "progress.log"


class Figures:
    started = time.perf_counter()
    hypercalls = 0  # hypercalls made with the hypervisor's invariants checked after each
    images = 0  # mutated images given to `pvtool run` and `pvtool patch`
    commands = 0  # pvtool commands run on them
    invariants = 0  # invariant checks passed (one check: every invariant of a test)


COUNTERS = ("hypercalls", "images", "commands", "invariants")
Counts = dict[str, int]  # Figures' counters as a value: one process's, or several added up


def here() -> Counts:
    """This process's counters."""
    return {name: getattr(Figures, name) for name in COUNTERS}


def start() -> None:
    """A new campaign: no figures or progress left from an earlier one (the controller
    calls this before any worker starts)."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    for old in FIGURES_DIR.glob("*.json"):
        old.unlink()
    PROGRESS_LOG.write_text("")


def record(worker: str) -> None:
    """Write this worker process's figures for the controller to add up."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    (FIGURES_DIR / f"{worker}.json").write_text(json.dumps(here()))


def total() -> Counts:
    """This process's figures and every worker's recorded since start()."""
    counts = here()
    for path in sorted(FIGURES_DIR.glob("*.json")):
        worker = json.loads(path.read_text())
        counts = {name: counts[name] + worker[name] for name in COUNTERS}
    return counts


def progress(line: str) -> None:
    """One progress line: on stdout (seen without xdist, with -s) and, in a campaign,
    in PROGRESS_LOG."""
    print(f"\n{line}", flush=True)
    if in_campaign():
        FIGURES_DIR.mkdir(parents=True, exist_ok=True)
        with PROGRESS_LOG.open("a") as log:
            log.write(line + "\n")


def summary(counts: Counts | None = None, started: float | None = None) -> str:
    """The campaign's line: COUNTS (default this process's) since STARTED."""
    counts = counts or here()
    elapsed = time.perf_counter() - (Figures.started if started is None else started)
    return (f"fuzzing campaign: {counts['hypercalls']:,} hypercalls, {counts['images']:,} "
            f"mutated images ({counts['commands']:,} commands), {counts['invariants']:,} "
            f"invariant checks passed, in {elapsed:,.0f} s")
