"""The guests' own workloads: each image booted natively, paravirtualized (patched on
the fly into a scratch folder) and trap-and-emulated when this pvtool has that mode.
Repeats are interleaved across modes so a slow spell of the machine hits them all.

Around each PV run, short runs of the null-hypercall kernel (bench/nullcall.py), just
before and just after, price a null hypercall in rdtsc cycles there and then, so each
PV operation a guest prints is also given in null hypercalls: a ratio taken within one
repeat rather than across a whole bench, on a machine whose load drifts. A guest is
priced in the null-hypercall kernel of its own width (int 0x82, or the 64-bit
hypercall page's syscall: bench/tinyxen64.py), whose hypercalls take its path.

A mode that cannot run a guest (a patch refused, a boot refused, a run that never
finishes) is recorded with why, in words for the row's note, and not run again."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pvtool.bench import nullcall
from pvtool.bench.measure import Timing, per_second
from pvtool.bench.operations import Operation, parse_operations, summarize
from pvtool.bench.progress import BenchProgress
from pvtool.errors import PvtoolError
from pvtool.image.elf import load_elf
from pvtool.machine.stop import StopKind
from pvtool.run import Mode, RunOptions, RunResult, run_image

DISK_SIZE = 256 << 10  # minikern's disk: zeros, fresh for every run
RUN_TIMEOUT = 120.0  # seconds: a guest that loops for ever still ends the bench
UNFINISHED = (StopKind.TIMEOUT, StopKind.INSN_LIMIT)  # the run's limit, not the guest, ended it
BROKEN = (StopKind.CRASH, StopKind.EMULATOR_ERROR)  # a domain crashed: its figures mean nothing
NULL_CALLS_PER_RUN = 2_000  # the null hypercalls timed before and after each PV run


def fresh_disk(workdir: Path, size: int = DISK_SIZE) -> Path:
    disk = workdir / "disk.img"
    disk.write_bytes(bytes(size))
    return disk


def available_modes() -> list[Mode]:
    """Native and PV always; trap-and-emulate when pvtool.run.Mode has it."""
    modes = [Mode.NATIVE, Mode.PV]
    trap = getattr(Mode, "TRAP", None)
    if trap is not None:
        modes.insert(1, trap)
    return modes


@dataclass
class ModeRuns:
    """One guest in one mode: every repeat's result, or why it could not run."""

    mode: Mode
    image: Path | None  # what was booted (the patched copy for PV)
    results: list[RunResult] = field(default_factory=list)
    error: str | None = None
    prepare_seconds: float | None = None  # patching, for PV
    # each run's `nanobench:` lines (bench/operations.py); {} for other guests
    operations: list[dict[str, Operation]] = field(default_factory=list)
    # PV: a null hypercall's rdtsc cycles, timed around each run
    null_cycles: list[float] = field(default_factory=list)
    outputs: list[bytes] = field(default_factory=list)  # each run's serial output
    profile: dict | None = None  # one more run, under --profile: the exits table's times
    bits: int = 32  # the booted image's width: its null-hypercall kernel's

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.results)

    def operations_summary(self) -> dict[str, dict] | None:
        """Per operation over the repeats (None if the mode did not run)."""
        return summarize(self.operations, self.null_cycles) if self.ok else None

    @property
    def timing(self) -> Timing:
        return Timing(tuple(r.wall_seconds for r in self.results))

    def to_dict(self, native: "ModeRuns | None") -> dict:
        if not self.ok:
            return {"ok": False, "error": self.error}
        last = self.results[-1]
        ratio = (self.timing.median / native.timing.median
                 if native is not None and native.ok else None)
        return {
            "ok": True, "error": None,
            "prepare_seconds": round(self.prepare_seconds, 6)
            if self.prepare_seconds is not None else None,
            "wall_seconds": self.timing.to_dict(),
            "ratio_to_native": round(ratio, 4) if ratio is not None else None,
            "insns_upper_bound": last.insns_upper_bound,
            "insns_exact": None,  # an exact count costs x12 (UNICORN.md): not measured
            "insns_per_second": round(per_second(last.insns_upper_bound,
                                                 self.timing.median)),
            "exits": dict(sorted(last.exits.items())),
            "exits_total": sum(last.exits.values()),
            "hypercalls": dict(sorted(last.hypercalls.items())),
            "stop": last.to_dict()["stop"],
            "guest_passed": guest_passed(last),
            "same_exits_every_run": all(r.exits == last.exits for r in self.results),
            "null_hypercall_cycles": [round(c, 2) for c in self.null_cycles],
            "profile": self.profile,
        }


def guest_passed(result: RunResult) -> bool:
    """The guest ended on purpose with status 0 (every check passed, or poweroff)."""
    return (result.stop.kind in (StopKind.GUEST_EXIT, StopKind.SHUTDOWN)
            and result.stop.code == 0)


def run_workloads(image: Path, repeat: int, workdir: Path,
                  progress: BenchProgress) -> dict[Mode, ModeRuns]:
    """IMAGE in every mode, REPEAT times: a step of PROGRESS each, skipped once its mode
    has failed."""
    runs = {mode: _prepare(mode, image, workdir) for mode in available_modes()}
    for index in range(repeat):
        for mode, mode_runs in runs.items():
            if mode_runs.error is not None:
                progress.skip(1)
                continue
            progress.step(f"{mode.value} run {index + 1}/{repeat}")
            _run_and_record(mode_runs, workdir)
    for mode, mode_runs in runs.items():
        if not mode_runs.ok:
            progress.skip(1)
            continue
        progress.step(f"{mode.value}, profiled")
        mode_runs.profile = _profile(mode_runs, workdir)
    return runs


def _profile(mode_runs: ModeRuns, workdir: Path) -> dict | None:
    """One more run, profiled (machine/profile.py), apart from the timed ones: the
    profile's timing calls would slow those. Its counts are its own run's (with the
    host's TSC, a guest's exits may differ a little from run to run)."""
    try:
        result = _run_once(mode_runs, workdir, lambda _: None, profile=True)
    except PvtoolError:
        return None
    return result.profile.to_dict()


def _run_and_record(mode_runs: ModeRuns, workdir: Path) -> None:
    """One run, its output and its operations kept; for PV a null hypercall priced
    just before and just after it."""
    before = _null_cycles(workdir, mode_runs.bits) if mode_runs.mode is Mode.PV else None
    output = bytearray()
    try:
        result = _run_once(mode_runs, workdir, output.extend)
    except PvtoolError as exc:
        mode_runs.error = exc.message
        return
    if result.stop.kind in UNFINISHED:
        mode_runs.error = f"did not finish: {result.stop.reason}"
        return
    if result.stop.kind in BROKEN:
        mode_runs.error = f"{result.stop.kind.value}: {result.stop.reason}"
        return
    mode_runs.results.append(result)
    mode_runs.outputs.append(bytes(output))
    mode_runs.operations.append(parse_operations(mode_runs.outputs[-1]))
    if before is not None:
        mode_runs.null_cycles.append((before + _null_cycles(workdir, mode_runs.bits)) / 2)


def _null_cycles(workdir: Path, bits: int) -> float:
    """A BITS-bit domain's null hypercall's rdtsc cycles, now."""
    kernel = workdir / f"nullcall{bits}-{NULL_CALLS_PER_RUN}.elf"
    if not kernel.exists():
        nullcall.write_kernel(workdir, NULL_CALLS_PER_RUN, bits)
    return nullcall.run_kernel(kernel)[1] / NULL_CALLS_PER_RUN


def _prepare(mode: Mode, image: Path, workdir: Path) -> ModeRuns:
    """PV boots a copy patched now (with the patch set of the image's width); the other
    modes boot IMAGE itself."""
    bits = load_elf(image).bits
    if mode is not Mode.PV:
        return ModeRuns(mode, image, bits=bits)
    from pvtool.patch.pipeline import patch_image

    patched = workdir / f"{image.stem}.pv.elf"
    started = time.perf_counter()
    try:
        patch_image(image, patched)
    except PvtoolError as exc:
        return ModeRuns(mode, None, error=f"patch: {exc.message}", bits=bits)
    return ModeRuns(mode, patched, prepare_seconds=time.perf_counter() - started, bits=bits)


def _run_once(mode_runs: ModeRuns, workdir: Path, output: Callable[[bytes], None],
              profile: bool = False) -> RunResult:
    options = RunOptions(mode=mode_runs.mode, timeout=RUN_TIMEOUT, disks=(fresh_disk(workdir),),
                         host_tsc=True,  # nanobench times itself in host cycles
                         profile=profile)
    return run_image(mode_runs.image, options, output)
