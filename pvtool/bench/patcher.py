"""The patcher's speed and peak memory: `pvtool patch` of one image, in a child process
of its own so that nothing else the bench did counts in its memory, and timed around
the patch alone (discovery, sites, plans, emission, verification, the written image,
its listing diff and report), not the interpreter's start or the imports.
`python -m pvtool.bench.patcher IMAGE` prints the child's figures as JSON.

The rate is the instructions discovery decoded (the report's count) per second of
the whole patch: what a user waits for, per instruction of the kernel.

Each row also carries the port's Table 2 figures: `pvtool diffstat --json` of the
listing diff that patch wrote (lines modified or added, and their share of the
original listing), beside Xen's hand port of Linux as diffstat reports it. It runs
after the patch is timed and its peak read, in a process of its own (bench and
diffstat are parts on one floor: neither imports the other)."""

import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pvtool.bench.peakmemory import high_water_kib, run_child
from pvtool.bench.progress import BenchProgress
from pvtool.errors import PvtoolError
from pvtool.interrupts import install

INSNS_PER_SECOND_GOAL = 200_000  # issue 12: a distribution's Linux in well under a minute


@dataclass(frozen=True)
class PatcherRun:
    image: str
    instructions: int  # the patch report's count
    sites: int
    seconds: float  # patch_image, wall clock
    baseline_kib: int  # the child's peak after imports, before the patch
    peak_kib: int  # the child's peak after the patch
    source: str  # "VmHWM" or "ru_maxrss" (peakmemory.py says why VmHWM)
    table2: dict  # the listing diff's lines and share, and Xen's Linux port's

    @property
    def insns_per_second(self) -> float:
        return self.instructions / self.seconds

    def to_dict(self) -> dict:
        return {"image": self.image, "instructions": self.instructions, "sites": self.sites,
                "seconds": round(self.seconds, 3),
                "insns_per_second": round(self.insns_per_second),
                "goal_insns_per_second": INSNS_PER_SECOND_GOAL,
                "within_goal": self.insns_per_second >= INSNS_PER_SECOND_GOAL,
                "baseline_kib": self.baseline_kib, "peak_kib": self.peak_kib,
                "source": self.source, "isolated": True, "table2": self.table2}


def measure_patcher(image: Path) -> PatcherRun:
    figures = run_child("pvtool.bench.patcher", str(image))
    return PatcherRun(str(image), figures["instructions"], figures["sites"],
                      figures["seconds"], figures["baseline_kib"], figures["peak_kib"],
                      figures["source"], figures["table2"])


def patcher_rows(images: Sequence[Path], progress: BenchProgress) -> list[dict]:
    """A row per image (a step of PROGRESS each): the figures, or why the patch failed."""
    rows = []
    for image in images:
        progress.step(image.name)
        try:
            rows.append({"ok": True, **measure_patcher(image).to_dict()})
        except RuntimeError as exc:
            rows.append({"ok": False, "image": str(image), "error": str(exc)})
    return rows


def _child(image: Path) -> None:
    from pvtool.patch.pipeline import patch_image

    baseline, _ = high_water_kib()
    with tempfile.TemporaryDirectory(prefix="pvtool-bench-") as workdir:
        start = time.perf_counter()
        report = patch_image(image, Path(workdir) / f"{image.stem}.pv.elf")
        seconds = time.perf_counter() - start
        peak, source = high_water_kib()
        table2 = table2_row(report.diff_path)
    print(json.dumps({"instructions": report.instructions, "sites": len(report.sites),
                      "seconds": seconds, "baseline_kib": baseline, "peak_kib": peak,
                      "source": source, "table2": table2}))


def table2_row(diff: Path) -> dict:
    """The Table 2 figures `pvtool diffstat --json DIFF` prints for a listing diff."""
    port = run_child("pvtool", "diffstat", "--json", "-", str(diff))
    xen = port["xen"]["linux"]
    return {"lines": port["lines_modified_or_added"], "share_percent": port["share_percent"],
            "baseline_lines": port["baseline_lines"], "xen_linux_lines": xen["lines"],
            "xen_linux_share_percent": xen["share_percent"]}


if __name__ == "__main__":
    install()
    try:
        _child(Path(sys.argv[1]))
    except PvtoolError as exc:  # one line for the parent's error, not a traceback
        sys.exit(exc.message)
