"""A wall-clock limit that holds while Unicorn runs: --timeout.

The run loop checks its deadline between slices, but one slice may take long: a
million instructions that each call a Python hook (an open-bus sweep, an MMIO-heavy
loop) take seconds. A Watchdog's thread calls the machine's `stop` (uc.emu_stop, which
is safe from another thread: it only asks the CPU to leave its loop) once the deadline
has passed, so the slice running then ends after its current instruction and the
loop sees the deadline. Unicorn forgets a stop asked for before emu_start began, so
the thread asks again every REPEAT seconds until the watchdog is closed; the run
stops within about one REPEAT, plus one instruction's hooks, of its deadline.

While Unicorn emulates, ctypes has released the GIL; while a hook runs, the thread
gets it at Python's switch interval (5 ms).
"""

import threading
import time
from collections.abc import Callable
from types import TracebackType

REPEAT = 0.05  # seconds between two stops asked for past the deadline


class Watchdog:
    """Calls STOP from DEADLINE (time.perf_counter's clock) on, every REPEAT seconds,
    until closed; use it as a context manager around the run loop."""

    def __init__(self, deadline: float, stop: Callable[[], None]):
        self.deadline = deadline
        self.stop = stop
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pvtool-timeout",
                                        daemon=True)

    def __enter__(self) -> "Watchdog":
        self._thread.start()
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._closed.set()
        self._thread.join()

    def _watch(self) -> None:
        wait = max(0.0, self.deadline - time.perf_counter())
        while not self._closed.wait(wait):
            self.stop()
            wait = REPEAT
