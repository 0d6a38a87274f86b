"""The bar over the whole bench run, at a terminal: the step running and how many of
the planned steps are done; and nothing of it when the run fails."""

import io

import pytest
from rich.console import Console

from pvtool.bench.progress import BenchProgress


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120), out


def test_at_a_terminal_the_bar_shows_the_step_and_the_count():
    console, out = terminal()
    with BenchProgress(console, 4) as progress:
        progress.phase("hello.elf: native, trap, pv")
        progress.step("native run 1/2")
        progress.skip(2)
        progress.step("pv run 2/2")
    text = out.getvalue()
    assert "bench: hello.elf: native, trap, pv: native run 1/2" in text
    assert "0/4" in text and "3/4" in text
    assert "bench: [" not in text  # no plain phase lines under the bar
    assert text.rstrip().endswith("bench: done in 0:00, 4 of 4 steps")


def test_a_failed_run_ends_without_the_done_line():
    console, out = terminal()
    with pytest.raises(KeyboardInterrupt), BenchProgress(console, 3) as progress:
        progress.phase("limits")
        raise KeyboardInterrupt
    assert "done in" not in out.getvalue()
