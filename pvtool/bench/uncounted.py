"""What deterministic virtual time costs on a whole guest: pvtool's native run of it
again with Unicorn's instruction count off (emu_start's count=0, which installs no
per-instruction hook), beside the counted run the bench already timed.

Virtual time (machine/clock.py) needs the count only to end a slice where a timer
event falls due, so that the interrupt arrives at the same instruction every run.
Without it a slice ends only at a stop, a hlt or a hook's emu_stop, and time never
moves: no timer interrupt is ever delivered. So the uncounted run is taken only for
a guest whose counted run took no device interrupt and never waited in hlt: it then
runs the same instructions, and must print the same bytes (checked). Its time is the
floor any deterministic scheme over this emulator has, hooks and devices included.
"""

import time
from dataclasses import dataclass
from pathlib import Path

from pvtool.image.elf import load_elf
from pvtool.machine.exits import Exit
from pvtool.machine.native import boot_bare_pc
from pvtool.machine.pc import Machine
from pvtool.machine.stop import Stop, StopKind
from pvtool.machine.watchdog import Watchdog

UNCOUNTED = 0  # emu_start's count: no instruction counting at all
TIMED_EXITS = (Exit.IRQ, Exit.HLT)  # a run with these needs virtual time to be the same


@dataclass(frozen=True)
class UncountedRun:
    seconds: float
    output: bytes
    stop: Stop


def needs_time(exits) -> str | None:
    """Why a run with EXITS cannot be repeated uncounted, or None if it can."""
    used = [str(kind) for kind in TIMED_EXITS if exits.get(kind)]
    if used:
        return f"its native run took {' and '.join(used)} exits, which need virtual time"
    return None


def run_uncounted(image: Path, timeout: float) -> UncountedRun:
    """IMAGE booted natively as `pvtool run --native` boots it (no disk, no command
    line), then run uncounted to its stop; a run past TIMEOUT host seconds is
    stopped (a guest that polls a timer would never end)."""
    kernel = load_elf(image)
    output = bytearray()
    machine = Machine(output=output.extend, bits=kernel.bits, native_cpu=True)
    boot_bare_pc(machine, kernel, cmdline=b"", modules=())
    late = Stop(StopKind.TIMEOUT, f"ran past {timeout:g} s", 0)
    started = time.perf_counter()
    with Watchdog(started + timeout, lambda: machine.request_stop(late)):
        while machine.stop is None and not machine.halted():
            machine.run_slice(UNCOUNTED)
    seconds = time.perf_counter() - started
    stop = machine.stop or Stop(StopKind.HALTED, "hlt: time would have to move", 0)
    return UncountedRun(seconds, bytes(output), stop)
