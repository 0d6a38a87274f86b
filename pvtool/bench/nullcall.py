"""A null hypercall's round trip through pvtool's hypervisor: the tiny Xen kernel of
tinyxen.py making N xen_version calls through `int 0x82`, booted with run_image like
any PV guest. Per call, twice: the run loop's wall time / N (the loop's other
instructions cost nanoseconds; domain building is outside the run loop's clock), and
the kernel's own rdtsc cycles / N, the unit nanobench's operations are measured in
(bench/workloads.py runs it around each PV run, for that reason; a 64-bit guest's
around the 64-bit kernel of tinyxen64.py, which calls through its hypercall page)."""

import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pvtool.bench import tinyxen, tinyxen64
from pvtool.bench.measure import Timing
from pvtool.bench.operations import parse_operations
from pvtool.bench.tinyxen import OPERATION
from pvtool.run import Mode, RunOptions, RunResult, run_image

RAM = 16 << 20  # small: the domain builder writes a p2m entry per page


@dataclass(frozen=True)
class NullCallResult:
    calls: int
    timing: Timing
    cycles: tuple[int, ...]  # each run's rdtsc cycles for the CALLS calls
    counted_calls: int  # xen_version calls the hypervisor saw in the last run
    stop: str

    @property
    def seconds_per_call(self) -> float:
        return self.timing.median / self.calls

    @property
    def cycles_per_call(self) -> float:
        return statistics.median(self.cycles) / self.calls

    @property
    def tsc_hz(self) -> float:
        """The host's time-stamp counter rate: the calls' rdtsc cycles over the run
        loop's seconds (the run's few other instructions and its boot's hypercalls
        are about a thousandth of it)."""
        return self.cycles_per_call / self.seconds_per_call

    def to_dict(self) -> dict:
        return {"calls": self.calls, "counted_calls": self.counted_calls,
                "stop": self.stop, "seconds": self.timing.to_dict(),
                "seconds_per_call": self.seconds_per_call, "cycles": list(self.cycles),
                "cycles_per_call": round(self.cycles_per_call, 2),
                "tsc_hz": round(self.tsc_hz)}


def run_null_hypercalls(calls: int, repeat: int, bits: int = 32) -> NullCallResult:
    """CALLS null hypercalls by the BITS-bit kernel, REPEAT runs."""
    runs, cycles = [], []
    with tempfile.TemporaryDirectory(prefix="pvtool-bench-") as workdir:
        kernel = write_kernel(Path(workdir), calls, bits)
        for _ in range(repeat):
            result, run_cycles = run_kernel(kernel)
            runs.append(result.wall_seconds)
            cycles.append(run_cycles)
    return NullCallResult(calls, Timing(tuple(runs)), tuple(cycles),
                          result.hypercalls["xen_version"], result.stop.describe())


KERNELS = {32: tinyxen.null_hypercall_kernel, 64: tinyxen64.null_hypercall_kernel}


def write_kernel(directory: Path, calls: int, bits: int = 32) -> Path:
    """The BITS-bit kernel making CALLS null hypercalls, as a file in DIRECTORY."""
    kernel = directory / f"nullcall{bits}-{calls}.elf"
    kernel.write_bytes(KERNELS[bits](calls))
    return kernel


def run_kernel(kernel: Path) -> tuple[RunResult, int]:
    """One run of a kernel from write_kernel: the result and the cycles it printed."""
    output = bytearray()
    result = run_image(kernel, RunOptions(mode=Mode.PV, ram_size=RAM, host_tsc=True),
                       output.extend)
    return result, parse_operations(bytes(output))[OPERATION].cycles
