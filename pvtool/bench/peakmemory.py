"""pvtool's peak memory on one native run, measured in a child process so nothing
else this process did counts: `python -m pvtool.bench.peakmemory IMAGE` prints the
peak resident set after imports and after the run, in KiB, as JSON.

The figure is the child's VmHWM (/proc/self/status): Linux carries ru_maxrss across
fork and exec, so a child's ru_maxrss starts at its parent's size at the fork (the
bench's own ~100 MiB). ru_maxrss is reported too; without /proc it is the figure."""

import json
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pvtool.bench.workloads import fresh_disk


@dataclass(frozen=True)
class PeakMemory:
    image: str
    mode: str
    baseline_kib: int  # after importing pvtool, before the machine exists
    peak_kib: int  # after the run
    ru_maxrss_kib: int  # the child's ru_maxrss, inherited high-water mark included
    source: str  # "VmHWM" or "ru_maxrss"
    isolated: bool = True  # measured in a child process of its own

    def to_dict(self) -> dict:
        return {"image": self.image, "mode": self.mode, "isolated": self.isolated,
                "source": self.source, "baseline_kib": self.baseline_kib,
                "peak_kib": self.peak_kib, "ru_maxrss_kib": self.ru_maxrss_kib}


def measure_peak_memory(image: Path) -> PeakMemory:
    figures = run_child("pvtool.bench.peakmemory", str(image))
    return PeakMemory(str(image), "native", figures["baseline_kib"], figures["peak_kib"],
                      figures["ru_maxrss_kib"], figures["source"])


def run_child(module: str, *args: str) -> dict:
    """The JSON figures `python -m MODULE ARGS` prints, measured in a process of its
    own; RuntimeError with the end of its stderr if it fails."""
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{module} child failed: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout)


def high_water_kib() -> tuple[int, str]:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]), "VmHWM"
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"


def _child(image: Path) -> None:
    from pvtool.run import Mode, RunOptions, run_image

    baseline, _ = high_water_kib()
    with tempfile.TemporaryDirectory(prefix="pvtool-bench-") as workdir:
        options = RunOptions(mode=Mode.NATIVE, disks=(fresh_disk(Path(workdir)),))
        run_image(image, options, lambda data: None)
    peak, source = high_water_kib()
    print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "source": source,
                      "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
