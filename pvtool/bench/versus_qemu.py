"""pvtool's native mode against QEMU on the same image, in the same bench run: QEMU is
what users compare pvtool with. A 32-bit guest is judged by qemu-system-i386, a 64-bit
one by qemu-system-x86_64 (bench/qemu.py).

QEMU is timed as a whole process (bench/qemu.py), pvtool by its run loop (the machine
built and the kernel loaded beforehand are not counted). QEMU's start-up and shut-down
alone are timed too, on a kernel that exits at once (bench/exitkernel.py), before each
of the guest's QEMU runs, so that both medians see the machine's load alike; the ratio
pvtool / QEMU is then given both ways: over QEMU's whole run, and over that run less
its start-up. A ratio is given only when every QEMU run printed the same bytes as
pvtool's native run and exited with the same code; otherwise the row says where they
part. A guest's QEMU runs follow its pvtool runs rather than being interleaved with them.

Beside them, once per guest, pvtool's native run with Unicorn's instruction count off
(bench/uncounted.py): what deterministic virtual time costs on that guest, and the
floor pvtool's native mode has on this emulator, whatever scheme keeps time.
"""

from dataclasses import dataclass, field, replace
from pathlib import Path

from pvtool.bench.exitkernel import exit_kernel
from pvtool.bench.measure import Timing
from pvtool.bench.progress import BenchProgress
from pvtool.bench.qemu import (
    QEMU,
    QEMU_ARGS,
    QemuRun,
    not_installed,
    qemu_path,
    qemu_version,
    run_qemu,
)
from pvtool.bench.uncounted import UncountedRun, needs_time, run_uncounted
from pvtool.bench.workloads import RUN_TIMEOUT, ModeRuns, fresh_disk
from pvtool.machine.stop import StopKind

SHOWN_BYTES = 24  # of each side, where the outputs part


@dataclass(frozen=True)
class QemuSide:
    """A QEMU program in this bench run: where it is and the exit-at-once kernel its
    start-up is timed with, or why it is absent or unusable."""

    path: str | None
    version: str = ""
    exit_kernel: Path | None = None
    error: str | None = None
    program: str = QEMU

    def to_dict(self) -> dict:
        return {"program": self.program, "available": self.path is not None, "path": self.path,
                "version": self.version, "args": list(QEMU_ARGS), "error": self.error}

    def startup(self) -> QemuRun | str:
        """One run of the exit-at-once kernel, or why it went wrong: it must exit with
        0 and print nothing."""
        run = run_qemu(self.path, self.exit_kernel, None, RUN_TIMEOUT)
        if run.failure or run.guest_code != 0 or run.output:
            return run.failure or f"the exit-at-once kernel ended with status {run.status}"
        return run


def find_qemu(workdir: Path, program: str = QEMU) -> QemuSide:
    """QEMU PROGRAM, checked with one run of a kernel that exits at once (written to
    WORKDIR; both programs boot it)."""
    path = qemu_path(program)
    if path is None:
        return QemuSide(None, error=not_installed(program), program=program)
    kernel = workdir / "exit-at-once.elf"
    if not kernel.exists():
        kernel.write_bytes(exit_kernel())
    side = QemuSide(path, qemu_version(path), kernel, program=program)
    checked = side.startup()
    return replace(side, error=checked) if isinstance(checked, str) else side


@dataclass
class QemuComparison:
    """One guest on QEMU: its runs and the start-up runs taken between them, and why
    there is no ratio if there is none."""

    runs: list[QemuRun] = field(default_factory=list)
    startup: list[QemuRun] = field(default_factory=list)
    error: str | None = None
    uncounted: UncountedRun | str | None = None  # the run without the count, or why not

    def to_dict(self, native: ModeRuns) -> dict:
        if self.error is not None:
            return {"ok": False, "error": self.error, "uncounted": self._uncounted(native)}
        qemu = Timing(tuple(r.seconds for r in self.runs))
        startup = Timing(tuple(r.seconds for r in self.startup))
        return {"ok": True, "error": None, "wall_seconds": qemu.to_dict(),
                "startup_seconds": startup.to_dict(),
                "guest_code": self.runs[-1].guest_code,
                "pvtool_seconds": round(native.timing.median, 6),
                **ratios(native.timing.median, qemu.median, startup.median),
                "uncounted": self._uncounted(native, qemu.median - startup.median)}

    def _uncounted(self, native: ModeRuns, qemu_less_startup: float = 0.0) -> dict:
        """The uncounted run: its time, the counted run's over it (what virtual time
        costs) and its own over QEMU less start-up (the floor's ratio)."""
        run = self.uncounted
        if not isinstance(run, UncountedRun):
            return {"ok": False, "error": run or "not run"}
        return {"ok": True, "error": None, "seconds": round(run.seconds, 6),
                "counted_over_uncounted": round(native.timing.median / run.seconds, 6),
                "over_qemu_less_startup": round(run.seconds / qemu_less_startup, 6)
                if qemu_less_startup > 0 else None}


def ratios(pvtool: float, qemu: float, startup: float) -> dict:
    """pvtool / QEMU, over QEMU's whole run and over it less QEMU's start-up (None when
    the run was no longer than the start-up)."""
    rest = qemu - startup
    return {"less_startup_seconds": round(rest, 6),
            "pvtool_over_qemu": round(pvtool / qemu, 6),
            "pvtool_over_qemu_less_startup": round(pvtool / rest, 6) if rest > 0 else None}


def compare_with_qemu(image: Path, native: ModeRuns, side: QemuSide, repeat: int,
                      workdir: Path, progress: BenchProgress) -> QemuComparison:
    """IMAGE on QEMU REPEAT times, each with a fresh disk as pvtool's runs had, each
    checked against pvtool's native run and preceded by a start-up run: a step of
    PROGRESS each, the rest skipped at the first that fails."""
    comparison = QemuComparison()
    if side.error is not None:
        comparison.error = side.error
    elif not native.ok:
        comparison.error = "pvtool's native run did not complete: nothing to compare"
    if native.ok:
        comparison.uncounted = uncounted_beside(image, native)
    for index in range(repeat):
        if comparison.error is not None:
            progress.skip(repeat - index)
            return comparison
        progress.step(f"run {index + 1}/{repeat}")
        comparison.error = _run_beside(image, native, side, workdir, comparison)
    return comparison


def _run_beside(image: Path, native: ModeRuns, side: QemuSide, workdir: Path,
                comparison: QemuComparison) -> str | None:
    """A start-up run then a run of IMAGE, both kept in COMPARISON; or why not."""
    startup = side.startup()
    if isinstance(startup, str):
        return startup
    comparison.startup.append(startup)
    run = run_qemu(side.path, image, fresh_disk(workdir), RUN_TIMEOUT)
    error = run.failure or difference(native, run)
    if error is None:
        comparison.runs.append(run)
    return error


def uncounted_beside(image: Path, native: ModeRuns) -> UncountedRun | str:
    """IMAGE run natively without the instruction count, checked against the counted
    run; or why it was not run, or where it parts from it."""
    why = needs_time(native.results[-1].exits)
    if why is not None:
        return why
    run = run_uncounted(image, RUN_TIMEOUT)
    pvtool, stop = native.outputs[-1], native.results[-1].stop
    if run.output != pvtool:
        at = first_difference(pvtool, run.output)
        return (f"printed other bytes than the counted run from byte {at}: "
                f"{run.output[at:at + SHOWN_BYTES]!r}")
    if (run.stop.kind, run.stop.code) != (stop.kind, stop.code):
        return f"stopped otherwise than the counted run: {run.stop.reason}"
    return run


def difference(native: ModeRuns, run: QemuRun) -> str | None:
    """How QEMU's run parts from pvtool's last native run, or None if it does not:
    the same bytes on COM1 and the same isa-debug-exit code."""
    pvtool = native.outputs[-1]
    if run.output != pvtool:
        at = first_difference(pvtool, run.output)
        return (f"QEMU printed other bytes than pvtool from byte {at}: pvtool "
                f"{pvtool[at:at + SHOWN_BYTES]!r}, QEMU {run.output[at:at + SHOWN_BYTES]!r}")
    stop = native.results[-1].stop
    code = stop.code if stop.kind is StopKind.GUEST_EXIT else None
    if run.guest_code != code:
        return f"QEMU's guest exit code is {run.guest_code}, pvtool's {code}"
    return None


def first_difference(one: bytes, other: bytes) -> int:
    """Where ONE and OTHER first differ: the shorter's length if it begins the other."""
    pairs = zip(one, other, strict=False)
    return next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(one), len(other)))
