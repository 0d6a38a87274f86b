"""`--plot FILE.png`: each guest's wall time per mode as a ratio to native, one bar
group per guest. matplotlib is optional (the `pvtool[plot]` extra)."""

from pathlib import Path

from pvtool.errors import OutputError, PvtoolError


class PlotUnavailableError(PvtoolError):
    """matplotlib is not installed."""

    exit_status = 69  # EX_UNAVAILABLE


def require_matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailableError(
            "--plot needs matplotlib: pip install 'pvtool[plot]'") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def draw(data: dict, path: Path) -> None:
    pyplot = require_matplotlib()
    modes = data["modes_available"]
    guests = data["guests"]
    width = 0.8 / max(len(modes), 1)
    figure, axes = pyplot.subplots(figsize=(2 + 1.6 * len(guests), 4))
    for index, mode in enumerate(modes):
        ratios = [(g["modes"].get(mode) or {}).get("ratio_to_native") or 0 for g in guests]
        positions = [i + (index - (len(modes) - 1) / 2) * width for i in range(len(guests))]
        axes.bar(positions, ratios, width, label=mode)
    axes.set_xticks(range(len(guests)), [g["name"] for g in guests])
    axes.set_ylabel("wall time / native")
    axes.axhline(1.0, color="grey", linewidth=0.8)
    axes.set_title("pvtool bench: time relative to native")
    axes.legend()
    figure.tight_layout()
    try:
        figure.savefig(path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the chart: {exc.strerror or exc}") from None
    finally:
        pyplot.close(figure)
