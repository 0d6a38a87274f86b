"""What `pvtool bench` does around the harness: default images, the progress display,
and the chart. cli.py parses the options and writes the JSON (its one --json rule)."""

from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from pvtool import console
from pvtool.bench import plot, view
from pvtool.bench.harness import bench

DEFAULT_IMAGES = (Path("build/guests/minikern.elf"), Path("build/guests/hello.elf"))


def run_bench(images: Sequence[Path], repeat: int, plot_path: Path | None,
              patch_only: Sequence[Path] = (), show: bool = True) -> dict:
    """Every figure, as `--json` writes them; SHOW: the tables on stdout too."""
    if plot_path is not None:
        plot.require_matplotlib()  # fail before a minute of measuring, not after
    images = list(images) or [p for p in DEFAULT_IMAGES if p.is_file()]
    with _progress() as progress:
        data = bench(images, repeat, progress, patch_only).to_dict()
    if show:
        view.render(data, console.stdout)
    if plot_path is not None:
        plot.draw(data, plot_path)
    return data


@contextmanager
def _progress():
    """A spinner with the current step on stderr, only for a person at a terminal."""
    if not console.stderr.is_terminal:
        yield lambda message: None
        return
    with console.stderr.status("bench: starting") as status:
        yield lambda message: status.update(f"bench: {message}")

