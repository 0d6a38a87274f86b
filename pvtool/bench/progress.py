"""How far `pvtool bench` has got, on stderr: one bar over the whole run, with the
current step and the time left, for a person at a terminal; otherwise one plain line
as each phase begins, so a log stays readable.

The harness opens a phase (a guest's runs, its QEMU runs, the limits, the patcher)
and the measures inside it call `step` as each step begins, or `skip` for planned
steps that will not run (a mode that failed, QEMU absent), so the bar still ends at
its total."""

import time

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class BenchProgress:
    """A run of TOTAL steps, shown on CONSOLE."""

    def __init__(self, console: Console, total: int):
        self.console = console
        self.total = total
        self.done = 0
        self.phase_name = ""
        self.started = time.perf_counter()
        self._bar: Progress | None = None
        self._task = None

    def __enter__(self) -> "BenchProgress":
        if self.console.is_terminal:
            self._bar = Progress(TextColumn("bench: {task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("left"), TimeRemainingColumn(),
                                 console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task("starting", total=self.total)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.stop()
        if exc_info[0] is None:
            self.console.print(f"bench: done in {self.elapsed()}, {self.done} of "
                               f"{self.total} steps", markup=False, highlight=False)

    def elapsed(self) -> str:
        seconds = round(time.perf_counter() - self.started)
        return f"{seconds // 60}:{seconds % 60:02d}"

    def phase(self, name: str) -> None:
        """A phase begins: its own line when no bar is shown."""
        self.phase_name = name
        if self._bar is None:
            self.console.print(f"bench: [{self.done + 1}/{self.total}, {self.elapsed()}] "
                               f"{name}", markup=False, highlight=False)

    def step(self, detail: str) -> None:
        """A step of the current phase begins (the one before it has ended)."""
        self._advance(1, f"{self.phase_name}: {detail}")

    def skip(self, steps: int) -> None:
        """STEPS planned steps will not run."""
        self._advance(steps, self.phase_name)

    def _advance(self, steps: int, description: str) -> None:
        self.done += steps
        if self._bar is not None:
            # the bar counts steps finished: the one beginning now is not yet
            self._bar.update(self._task, completed=self.done - 1,
                             description=escape(description), refresh=True)
