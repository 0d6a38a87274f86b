"""What `pvtool bench` does around the harness: default images, the outputs checked
before the run, the progress display, and writing the JSON and the chart. cli/ only
parses the options."""

import json
from collections.abc import Sequence
from pathlib import Path

from pvtool import console
from pvtool.bench import plot, view
from pvtool.bench.harness import bench, planned_steps
from pvtool.bench.outputs import check_output, write_json
from pvtool.bench.progress import BenchProgress

DEFAULT_IMAGES = (Path("build/guests/minikern.elf"), Path("build/guests/hello.elf"))


def run_bench(images: Sequence[Path], repeat: int, json_path: Path | None,
              plot_path: Path | None, patch_only: Sequence[Path] = (),
              disk_sectors: int = 0, tables: bool = True) -> dict:
    """Measure, then show the TABLES (left out when the JSON goes to standard output)
    and write the JSON and the chart; the figures are returned."""
    # every output is checked before a minute of measuring, not after
    if plot_path is not None:
        plot.check_plot_path(plot_path)
    if json_path is not None:
        check_output(json_path, "--json")
    images = list(images) or [p for p in DEFAULT_IMAGES if p.is_file()]
    total = planned_steps(images, repeat, patch_only, disk_sectors)
    with BenchProgress(console.stderr, total) as progress:
        data = bench(images, repeat, progress, patch_only, disk_sectors).to_dict()
    if tables:
        view.render(data, console.stdout)
    if json_path is not None:
        write_json(json_path, json.dumps(data, indent=2) + "\n")
    if plot_path is not None:
        plot.draw(data, plot_path)
    return data
