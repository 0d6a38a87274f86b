"""`--plot FILE`: each guest's wall time per mode as a ratio to native, one bar group
per guest, each bar labelled with its ratio and its median time in seconds.
matplotlib is optional (the `pvtool[plot]` extra); what the bars show is computed by
`chart_bars`, which needs no matplotlib, so it is tested wherever pvtool is."""

from dataclasses import dataclass
from pathlib import Path

from pvtool.bench.outputs import check_output, check_suffix, tell_where
from pvtool.errors import OutputError, PvtoolError

SIZE_INCHES = (12, 7)
DPI = 100  # with SIZE_INCHES: 1200 x 700 pixels


class PlotUnavailableError(PvtoolError):
    """matplotlib is not installed."""

    exit_status = 69  # EX_UNAVAILABLE


@dataclass(frozen=True)
class Bar:
    """One guest in one mode: its height (the ratio to native) and its label; a mode
    that did not run has neither."""

    ratio: float | None
    seconds: float | None

    @property
    def label(self) -> str:
        if self.ratio is None or self.seconds is None:
            return "not run"
        return f"{self.ratio:.2f}x\n{self.seconds:.3g} s"


def chart_bars(data: dict) -> dict[str, list[Bar]]:
    """Per mode, a bar per guest in the order of data["guests"]."""
    bars = {}
    for mode in data["modes_available"]:
        runs = [guest["modes"].get(mode) or {} for guest in data["guests"]]
        bars[mode] = [Bar(run.get("ratio_to_native"),
                          (run.get("wall_seconds") or {}).get("median")) for run in runs]
    return bars


def require_matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailableError(
            "--plot needs matplotlib: pip install 'pvtool[plot]'") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def check_plot_path(path: Path) -> None:
    """Before the run: matplotlib is there, writes PATH's format, and PATH can be
    written."""
    pyplot = require_matplotlib()
    formats = sorted(pyplot.figure().canvas.get_supported_filetypes())
    pyplot.close("all")
    check_suffix(path, "--plot", formats)
    check_output(path, "--plot")


def draw(data: dict, path: Path) -> None:
    pyplot = require_matplotlib()
    names = [guest["name"] for guest in data["guests"]]
    bars = chart_bars(data)
    width = 0.8 / max(len(bars), 1)
    figure, axes = pyplot.subplots(figsize=SIZE_INCHES, dpi=DPI)
    for index, (mode, row) in enumerate(bars.items()):
        positions = [i + (index - (len(bars) - 1) / 2) * width for i in range(len(names))]
        drawn = axes.bar(positions, [bar.ratio or 0 for bar in row], width, label=mode)
        axes.bar_label(drawn, [bar.label for bar in row], fontsize=9, padding=2)
    axes.set_xticks(range(len(names)), names)
    axes.set_ylabel("wall time / native (labels: ratio, median seconds)")
    axes.axhline(1.0, color="grey", linewidth=0.8)
    axes.margins(y=0.15)  # room above the tallest bar for its label
    axes.set_title(f"pvtool bench: time relative to native, median of {data['repeat']} run(s)")
    axes.legend(title="mode", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=DPI)
    except OSError as exc:
        raise OutputError(f"--plot {path}: cannot write: {exc.strerror or exc}") from None
    finally:
        pyplot.close(figure)
    tell_where(path, "the chart")
