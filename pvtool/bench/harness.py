"""One bench run: the guests' workloads, each guest on QEMU beside pvtool's native
run, then the limits they are measured against, all in this process (the peak-memory
probe and QEMU excepted: they need processes of their own). The result is one
BenchReport, which the table, the JSON and the chart all read."""

import platform
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from pvtool.bench.disk import WAYS as DISK_WAYS
from pvtool.bench.disk import run_disk_rows
from pvtool.bench.emptyhook import HookResult, run_empty_hook
from pvtool.bench.goals import HYPERCALL_TARGET, goals_table
from pvtool.bench.hypercallfloor import run_hypercall_floor
from pvtool.bench.nullcall import NullCallResult, run_null_hypercalls
from pvtool.bench.operations import operations_table
from pvtool.bench.opexits import operation_exits, operation_exits_table, printed_operations
from pvtool.bench.patcher import patcher_rows
from pvtool.bench.peakmemory import PeakMemory, measure_peak_memory
from pvtool.bench.progress import BenchProgress
from pvtool.bench.qemu import QEMU_BY_WIDTH
from pvtool.bench.rawloop import LoopResult, run_register_loop
from pvtool.bench.rawsieve import SieveResult, run_sieve
from pvtool.bench.versus_qemu import (
    QemuComparison,
    QemuSide,
    compare_with_qemu,
    find_qemu,
)
from pvtool.bench.workloads import ModeRuns, available_modes, run_workloads
from pvtool.errors import PvtoolError, UsageError
from pvtool.image.elf import load_elf
from pvtool.patch.patchset import load_patch_set
from pvtool.run import Mode

LOOP_ITERATIONS = 10_000_000
HOOK_CALLS = 200_000
NULL_HYPERCALLS = 20_000
MIN_PROBE_REPEAT = 5  # the probes take milliseconds: more repeats cost nothing
# measure_limits: the register loop, the floor, each width's empty hook and null
# hypercalls, memory
LIMIT_STEPS = 7


@dataclass
class GuestBench:
    image: Path
    modes: dict[Mode, ModeRuns]
    qemu: QemuComparison
    bits: int = 32  # the ELF's width, which picks the QEMU that judges it
    # bench/opexits.py's figures by mode: None where the mode printed no nanobench line
    operation_exits: dict[Mode, dict | None] = field(default_factory=dict)

    def to_dict(self, tsc_hz: float | None = None) -> dict:
        """The figures; TSC_HZ, the host's, turns the operations' cycles into us."""
        native = self.modes.get(Mode.NATIVE)
        # per operation, then per mode: {} for a guest without nanobench lines
        operations = operations_table({mode.value: runs.operations_summary()
                                       for mode, runs in self.modes.items()})
        return {"image": str(self.image), "name": self.image.stem, "bits": self.bits,
                "modes": {mode.value: runs.to_dict(native)
                          for mode, runs in self.modes.items()},
                "qemu": self.qemu.to_dict(native),
                "operations": operations,
                # per operation, then per mode: {} for a guest without nanobench lines
                "operation_exits": operation_exits_table(self.operation_exits, operations,
                                                         tsc_hz)}


@dataclass
class Limits:
    register_loop: LoopResult
    empty_hook: HookResult  # int 0x80 on a 32-bit CPU (bench/emptyhook.py)
    null_hypercall: NullCallResult  # int 0x82 from a 32-bit kernel
    hypercall_floor: HookResult  # bench/hypercallfloor.py
    empty_hook64: HookResult  # syscall on a 64-bit CPU
    null_hypercall64: NullCallResult  # the hypercall page's syscall, a 64-bit kernel
    sieve: SieveResult | None = None
    sieve_error: str | None = None
    pvtool_native: dict | None = None  # the sieve's guest booted by pvtool, for comparison
    peak_memory: PeakMemory | None = None
    peak_memory_error: str | None = None

    @property
    def hypercall_over_hook(self) -> float:
        return self.null_hypercall.seconds_per_call / self.empty_hook.seconds_per_call

    @property
    def hypercall64_over_hook64(self) -> float:
        return self.null_hypercall64.seconds_per_call / self.empty_hook64.seconds_per_call

    def to_dict(self) -> dict:
        """Every figure; a 64-bit one under its 32-bit twin's key with 64 added, as
        the report's "qemu" and "qemu64"."""
        return {
            "register_loop": self.register_loop.to_dict(),
            "sieve": self.sieve.to_dict() if self.sieve else None,
            "sieve_error": self.sieve_error,
            "pvtool_native": self.pvtool_native,
            "empty_hook": self.empty_hook.to_dict(),
            "null_hypercall": self.null_hypercall.to_dict(),
            "hypercall_over_empty_hook": round(self.hypercall_over_hook, 3),
            "hypercall_floor": self.hypercall_floor.to_dict(),
            "floor_over_empty_hook": round(self.hypercall_floor.seconds_per_call
                                           / self.empty_hook.seconds_per_call, 3),
            "hypercall_target": HYPERCALL_TARGET,
            "hypercall_within_target": self.hypercall_over_hook <= HYPERCALL_TARGET,
            "empty_hook64": self.empty_hook64.to_dict(),
            "null_hypercall64": self.null_hypercall64.to_dict(),
            "hypercall64_over_empty_hook64": round(self.hypercall64_over_hook64, 3),
            "hypercall64_within_target": self.hypercall64_over_hook64 <= HYPERCALL_TARGET,
            "peak_memory": self.peak_memory.to_dict() if self.peak_memory else None,
            "peak_memory_error": self.peak_memory_error,
        }


@dataclass
class BenchReport:
    repeat: int
    guests: list[GuestBench]
    qemu: dict[int, QemuSide]  # by width: 32 always, 64 when a 64-bit guest is benched
    limits: Limits
    environment: dict = field(default_factory=dict)
    patcher: list[dict] = field(default_factory=list)  # bench/patcher.py's rows
    disk: dict | None = None  # bench/disk.py's rows; None when not asked for

    def to_dict(self) -> dict:
        data = {"schema": 1, "repeat": self.repeat, "environment": self.environment,
                "modes_available": [m.value for m in available_modes()],
                "qemu": self.qemu[32].to_dict(),
                "qemu64": self.qemu[64].to_dict() if 64 in self.qemu else None,
                "guests": [g.to_dict(self.limits.null_hypercall.tsc_hz)
                           for g in self.guests],
                "limits": self.limits.to_dict(),
                "patcher": self.patcher,
                "disk": self.disk}
        data["goals"] = goals_table(data)  # issue 17's, from the figures above
        return data


def check_images(images: Sequence[Path]) -> None:
    """Fail before measuring anything: every image must exist and be an x86 ELF, 32- or
    64-bit (a mode that cannot take one says so in its row)."""
    if not images:
        raise UsageError("no image to bench: give at least one guest kernel")
    for image in images:
        load_elf(image)  # says what is wrong: missing, a directory, not an ELF...


def qemu_widths(images: Sequence[Path]) -> list[int]:
    """The widths whose QEMU the bench checks: 32 always (the JSON's "qemu"), and 64
    when a 64-bit image is among IMAGES."""
    return sorted({32, *(load_elf(image).bits for image in images)})


def planned_steps(images: Sequence[Path], repeat: int, patch_only: Sequence[Path],
                  disk_sectors: int = 0) -> int:
    """The steps `bench` will take: each QEMU's first run; each guest in each mode and
    on QEMU, REPEAT times, once more profiled in each mode, and its exits per operation
    in each mode (skipped for a guest without nanobench lines); the disk ways, REPEAT
    times; the limits; a patch of every image."""
    per_guest = repeat * (len(available_modes()) + 1) + 2 * len(available_modes())
    disk = repeat * len(DISK_WAYS) if disk_sectors else 0
    return (len(qemu_widths(images)) + len(images) * per_guest + disk + LIMIT_STEPS
            + len(images) + len(patch_only))


def bench(images: Sequence[Path], repeat: int, progress: BenchProgress,
          patch_only: Sequence[Path] = (), disk_sectors: int = 0) -> BenchReport:
    """Every measure on IMAGES; the patcher's also on PATCH_ONLY (kernels too large or
    too foreign to boot here, such as a distribution's Linux); with DISK_SECTORS, the
    disk workload of that many sectors in each way pvtool gives minikern a disk."""
    check_images([*images, *patch_only])
    load_patch_set()  # the PV mode and the patcher's rows need it: say so before measuring
    guests = []
    with tempfile.TemporaryDirectory(prefix="pvtool-bench-") as name:
        workdir = Path(name)
        progress.phase("QEMU")
        qemu = {}
        for bits in qemu_widths(images):
            progress.step(f"{QEMU_BY_WIDTH[bits]}: a first run")
            qemu[bits] = find_qemu(workdir, QEMU_BY_WIDTH[bits])
        for image in images:
            bits = load_elf(image).bits
            progress.phase(f"{image.name}: {', '.join(m.value for m in available_modes())}")
            modes = run_workloads(image, repeat, workdir, progress)
            exits = measure_operation_exits(image, modes, progress)
            progress.phase(f"{image.name}: QEMU")
            versus = compare_with_qemu(image, modes[Mode.NATIVE], qemu[bits], repeat,
                                       workdir, progress)
            guests.append(GuestBench(image, modes, versus, bits, exits))
        disk = None
        if disk_sectors:
            progress.phase(f"disk I/O, {disk_sectors} sectors each way")
            disk = run_disk_rows(disk_sectors, repeat, workdir, progress)
    progress.phase("limits")
    limits = measure_limits(images, guests, max(repeat, MIN_PROBE_REPEAT), progress)
    progress.phase("pvtool patch (child processes)")
    patcher = patcher_rows([*images, *patch_only], progress)
    return BenchReport(repeat, guests, qemu, limits, _environment(), patcher, disk)


def measure_operation_exits(image: Path, modes: dict[Mode, ModeRuns],
                            progress: BenchProgress) -> dict[Mode, dict | None]:
    """Each mode's exits per nanobench operation (bench/opexits.py): a step each,
    skipped where the mode printed no nanobench line (a phase only if one did)."""
    printed = {mode: printed_operations(runs) for mode, runs in modes.items()}
    if any(printed.values()):
        progress.phase(f"{image.name}: exits per operation, each operation alone")
    figures = {}
    for mode, operations in printed.items():
        if not operations:
            progress.skip(1)
            figures[mode] = None
            continue
        progress.step(f"{mode.value}: each operation twice, profiled")
        figures[mode] = operation_exits(mode, modes[mode].image, operations)
    return figures


def measure_limits(images: Sequence[Path], guests: list[GuestBench], repeat: int,
                   progress: BenchProgress) -> Limits:
    """The LIMIT_STEPS steps: the probes, then the peak memory of a native run."""
    progress.step("raw Unicorn, register loop")
    loop = run_register_loop(LOOP_ITERATIONS, repeat)
    progress.step("a hypercall's floor: registers read and written in place")
    floor = run_hypercall_floor(HOOK_CALLS, repeat)
    hooks, nullcalls = {}, {}
    for bits, exit_name in ((32, "INTR hook (int 0x80)"), (64, "SYSCALL hook (syscall)")):
        progress.step(f"raw Unicorn, {bits}-bit empty {exit_name}")
        hooks[bits] = run_empty_hook(HOOK_CALLS, repeat, bits)
        progress.step(f"{bits}-bit null hypercalls")
        nullcalls[bits] = run_null_hypercalls(NULL_HYPERCALLS, repeat, bits)
    limits = Limits(loop, hooks[32], nullcalls[32], floor, hooks[64], nullcalls[64])
    sieve_guest = _sieve_guest(images, limits)
    if sieve_guest is None:
        progress.skip(1)
        return limits
    progress.step("peak memory of a native run (child process)")
    try:
        limits.peak_memory = measure_peak_memory(sieve_guest)
    except RuntimeError as exc:
        limits.peak_memory_error = str(exc)
    limits.pvtool_native = _native_speed(guests, sieve_guest)
    return limits


def _sieve_guest(images: Sequence[Path], limits: Limits) -> Path | None:
    """The first image with minikern's sieve (run raw); else the first image, for the
    peak-memory figure."""
    for image in images:
        try:
            limits.sieve = run_sieve(image, MIN_PROBE_REPEAT)
            return image
        except PvtoolError as exc:
            limits.sieve_error = exc.message
    return images[0] if images else None


def _native_speed(guests: list[GuestBench], image: Path) -> dict | None:
    for guest in guests:
        native = guest.modes.get(Mode.NATIVE)
        if guest.image == image and native is not None and native.ok:
            insns = native.results[-1].insns_upper_bound
            seconds = native.timing.median
            return {"image": str(image), "insns_upper_bound": insns,
                    "seconds": round(seconds, 6), "insns_per_second": round(insns / seconds),
                    "scope": "the whole guest run (boot, all programs, interrupts)"}
    return None


def _environment() -> dict:
    import os

    return {"python": platform.python_version(), "unicorn": version("unicorn"),
            "pvtool": version("pvtool"), "machine": platform.machine(),
            "cpus": os.cpu_count()}
