"""What `pvtool bench` does around the harness: default images, the progress display,
and writing the JSON and the chart. cli.py only parses the options."""

import json
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from pvtool import console
from pvtool.bench import plot, view
from pvtool.bench.harness import bench
from pvtool.errors import OutputError

DEFAULT_IMAGES = (Path("build/guests/minikern.elf"), Path("build/guests/hello.elf"))


def run_bench(images: Sequence[Path], repeat: int, json_path: Path | None,
              plot_path: Path | None, patch_only: Sequence[Path] = (),
              disk_sectors: int = 0) -> dict:
    if plot_path is not None:
        plot.require_matplotlib()  # fail before a minute of measuring, not after
    images = list(images) or [p for p in DEFAULT_IMAGES if p.is_file()]
    with _progress() as progress:
        data = bench(images, repeat, progress, patch_only, disk_sectors).to_dict()
    view.render(data, console.stdout)
    if json_path is not None:
        _write(json_path, json.dumps(data, indent=2) + "\n")
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


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None
