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
from pvtool.interrupts import held, install

CHILD_GRACE_SECONDS = 10  # for an interrupted child to remove its temporary files


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
    own; RuntimeError with the end of its stderr if it fails.

    The child has a session of its own, so a Ctrl-C at the terminal reaches only
    pvtool, which passes it on once (`_stop`): the child then unwinds as pvtool does
    and removes its temporary files, where a second signal could cut that short."""
    with subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as child:
        try:
            stdout, stderr = child.communicate()
        except KeyboardInterrupt:
            _stop(child)
            raise
    if child.returncode:
        raise RuntimeError(f"{module} child failed: {stderr.strip()[-300:]}")
    return json.loads(stdout)


def _stop(child: subprocess.Popen) -> None:
    """pvtool was interrupted: so is the child, which is given CHILD_GRACE_SECONDS to
    clean up before it is killed. Signals to pvtool wait until it has ended."""
    with held():
        child.terminate()
        try:
            child.communicate(timeout=CHILD_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()


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
    install()
    _child(Path(sys.argv[1]))
