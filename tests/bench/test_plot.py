"""The chart: what each bar shows, and the PNG itself (matplotlib, the pvtool[plot]
extra, is in the .venv the Makefile installs)."""

import struct

from pvtool.bench import plot


def figures() -> dict:
    def mode(ratio, seconds):
        return {"ok": True, "ratio_to_native": ratio, "wall_seconds": {"median": seconds}}

    return {"repeat": 1, "modes_available": ["native", "trap", "pv"],
            "guests": [{"name": "minikern", "modes": {"native": mode(1.0, 16.77),
                                                      "trap": mode(2.84, 47.64),
                                                      "pv": mode(0.86, 14.43)}},
                       {"name": "hello", "modes": {"native": mode(1.0, 0.0557),
                                                   "trap": {"ok": False, "error": "x"},
                                                   "pv": mode(31.67, 1.7625)}}]}


def test_each_bar_is_a_ratio_labelled_with_its_seconds():
    bars = plot.chart_bars(figures())
    assert list(bars) == ["native", "trap", "pv"]
    assert [bar.ratio for bar in bars["pv"]] == [0.86, 31.67]
    assert [bar.label for bar in bars["pv"]] == ["0.86x\n14.4 s", "31.67x\n1.76 s"]
    assert bars["trap"][1].label == "not run" and bars["trap"][1].ratio is None


def png_size(path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk (PNG spec, section 11.2.2)."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def test_the_png_is_written_at_1200_by_700(tmp_path, capsys):
    chart = tmp_path / "chart.png"
    plot.draw(figures(), chart)
    assert png_size(chart) == (plot.SIZE_INCHES[0] * plot.DPI, plot.SIZE_INCHES[1] * plot.DPI)
    assert png_size(chart) == (1200, 700)
    assert capsys.readouterr().err == f"bench: wrote the chart to {chart}\n"
