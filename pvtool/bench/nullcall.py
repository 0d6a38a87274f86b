"""A null hypercall's round trip through pvtool's hypervisor: the tiny Xen kernel of
tinyxen.py making N xen_version calls through `int 0x82`, booted with run_image like
any PV guest. Per call = the run loop's wall time / N (the loop's other instructions
cost nanoseconds; domain building is outside the run loop's clock)."""

import tempfile
from dataclasses import dataclass
from pathlib import Path

from pvtool.bench.measure import Timing
from pvtool.bench.tinyxen import null_hypercall_kernel
from pvtool.run import Mode, RunOptions, run_image

RAM = 16 << 20  # small: the domain builder writes a p2m entry per page


@dataclass(frozen=True)
class NullCallResult:
    calls: int
    timing: Timing
    counted_calls: int  # xen_version calls the hypervisor saw in the last run
    stop: str

    @property
    def seconds_per_call(self) -> float:
        return self.timing.median / self.calls

    def to_dict(self) -> dict:
        return {"calls": self.calls, "counted_calls": self.counted_calls,
                "stop": self.stop, "seconds": self.timing.to_dict(),
                "seconds_per_call": self.seconds_per_call}


def run_null_hypercalls(calls: int, repeat: int) -> NullCallResult:
    runs, result = [], None
    with tempfile.TemporaryDirectory(prefix="pvtool-bench-") as workdir:
        kernel = Path(workdir) / "nullcall.elf"
        kernel.write_bytes(null_hypercall_kernel(calls))
        options = RunOptions(mode=Mode.PV, ram_size=RAM)
        for _ in range(repeat):
            result = run_image(kernel, options, lambda data: None)
            runs.append(result.wall_seconds)
    return NullCallResult(calls, Timing(tuple(runs)), result.hypercalls["xen_version"],
                          result.stop.describe())
