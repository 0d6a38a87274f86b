"""What `pvtool diffstat` prints: Table 2 of the Xen paper with the port measured beside
Xen's Linux and XP columns, the parts of the port and why each sits in its category,
diffstat's per-file histogram, Xen's share, and diffstat's summary line last."""

import re
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pvtool.diffstat import DiffstatResult, FileStat, xen_table2
from pvtool.diffstat.port import AUTOMATIC, PortMeasure
from pvtool.views.widths import room_beside

BAR_WIDTH = 30  # histogram columns; longer files are scaled down, as diffstat does
MIN_BAR = 10  # the narrowest histogram drawn beside the names before they break
MARKS = (("+", "green"), ("-", "red"), ("!", "cyan"))  # diffstat -C's colours


def render(result: DiffstatResult, console: Console) -> None:
    console.print(_table(result, console))
    if result.baseline_lines is not None:
        console.print(_share_line(result), highlight=False)
    console.print(result.summary_line(), markup=False, highlight=False)


def render_port(port: PortMeasure, console: Console,
                versus: Sequence[PortMeasure] = ()) -> None:
    console.print(table2(port, versus))
    for index, other in enumerate(versus, 1):
        label = f"versus {index}" if len(versus) > 1 else "versus"
        console.print(versus_line(port, other, label), highlight=False)
    console.print(parts_table(port))
    for text in why_lines(port):
        console.print(text, highlight=False)
    console.print()
    console.print(_table(port.diffstat, console))
    if port.diffstat.baseline_lines is not None:
        console.print(_share_line(port.diffstat, port.baseline_measure), highlight=False)
    console.print(port.diffstat.summary_line(), markup=False, highlight=False)


def table2(port: PortMeasure, versus: Sequence[PortMeasure] = ()) -> Table:
    """Table 2's rows and totals: the port (automatic, hand-written, total) beside
    VERSUS (other ports of the same kernel, or of its port to another width: their
    totals) and Xen's Linux and Windows XP ports. Beside two or more VERSUS columns
    XP's is left out, so that the table keeps to 80 columns."""
    table = Table(title=f"Lines modified or added ({port.kind} {port.source}), "
                        "beside Table 2 of the Xen paper",
                  box=box.SIMPLE_HEAD, show_footer=True, title_justify="left",
                  show_edge=False, pad_edge=False)
    rows = port.categories()
    automatic = sum(r.automatic for r in rows)
    hand = sum(r.hand_written for r in rows)
    table.add_column("OS subsection", footer=Text("total\nportion of baseline"),
                     no_wrap=True)
    columns = [("auto-\nmatic", str(automatic), None),
               ("by\nhand", str(hand), None),
               ("this\nport", _total(automatic + hand, port.share_percent), "bold")]
    for index, other in enumerate(versus, 1):
        title = f"versus\n{index}" if len(versus) > 1 else "versus"
        columns.append((title, _total(other.added_or_modified, other.share_percent), None))
    with_xp = len(versus) < 2
    columns.append(("Xen\nLinux", _total(xen_table2.LINUX_TOTAL,
                                         xen_table2.LINUX_SHARE_PERCENT), None))
    if with_xp:
        columns.append(("Xen\nXP", _total(xen_table2.XP_TOTAL, xen_table2.XP_SHARE_PERCENT),
                        None))
    for title, footer, style in columns:
        table.add_column(title, footer=footer, justify="right", style=style, no_wrap=True)
    beside = [{r.name: r.total for r in other.categories()} for other in versus]
    for row in rows:
        cells = [str(row.automatic), str(row.hand_written), str(row.total)]
        cells += [str(totals.get(row.name, 0)) for totals in beside]
        cells.append(_xen(row.linux))
        if with_xp:
            cells.append(_xen(row.xp))
        table.add_row(Text(row.name), *cells)
    return table


def _total(lines: int, share: float | None) -> str:
    return f"{lines}\n" + (f"{share:.2f}%" if share is not None else "-")


def versus_line(port: PortMeasure, versus: PortMeasure, label: str = "versus") -> Text:
    """What the versus column LABEL is, and how the two ports' lines compare."""
    mine, theirs = port.added_or_modified, versus.added_or_modified
    ratio = f" ({mine / theirs:.2f}x its lines)" if theirs else ""
    automatic = sum(p.added for p in versus.parts if p.origin == AUTOMATIC)
    base = versus.diffstat.baseline_lines
    return Text(f"{label}: {versus.kind} {versus.source}: {theirs} lines modified or "
                f"added, {automatic} of them automatic"
                + (f", of its own baseline of {base} lines" if base else "")
                + f"; this port: {mine}{ratio}")


def _xen(value: int | None) -> str:
    return "-" if value is None else str(value)


def parts_table(port: PortMeasure) -> Table:
    """Each part: its category, origin, '+' and '-' lines."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for title in ("part", "category", "origin"):
        table.add_column(title, no_wrap=True)
    table.add_column("+", justify="right")
    table.add_column("-", justify="right")
    for part in port.parts:
        table.add_row(Text(part.name), Text(part.category), part.origin, str(part.added),
                      str(part.removed))
    return table


def why_lines(port: PortMeasure) -> list[Text]:
    """Why each kind of part sits in its category, once per distinct reason."""
    seen: dict[str, list[str]] = {}
    for part in port.parts:
        seen.setdefault(part.why, []).append(part.name)
    return [Text(f"{', '.join(names)}: {why}") for why, names in seen.items()]


def histogram(counts: tuple[int, int, int], scale: int, width: int = BAR_WIDTH) -> str:
    """diffstat's bar of '+', '-' and '!' for (inserted, deleted, modified).

    scale is the largest file's total, or width if that is smaller (diffstat only
    shrinks). This is diffstat's plot_num(): each mark's length is truncated and the
    error carried into the next mark, with the carry's sign as diffstat has it, so a
    carry can go negative and swallow a mark ((1, 1, 1) at width 56, scale 60 is "-").
    A negative length draws nothing, in C and here.
    """
    scale = max(scale, width)
    bar, carry = [], 0
    for count, (mark, _) in zip(counts, MARKS, strict=True):
        if count:
            product = width * count
            length = (product + carry) // scale
            carry = product - length * scale - carry
            bar.append(mark * max(length, 0))
    return "".join(bar)


def _table(result: DiffstatResult, console: Console) -> Table:
    """The per-file histogram, each name whole: the bar takes the width the names and
    counts leave (up to BAR_WIDTH, as diffstat -w scales it); where even a bar of
    MIN_BAR does not fit, a long name breaks after a '/', never inside a name."""
    names = {f.name: Text(f.name) for f in result.files}
    room = room_beside(console, _file_table(result, names))
    if room < MIN_BAR:
        longest = max(map(len, names), default=0)
        names = {name: _path_lines(name, longest - (MIN_BAR - room)) for name in names}
        room = room_beside(console, _file_table(result, names))
    return _file_table(result, names, max(1, min(BAR_WIDTH, room)))


def _file_table(result: DiffstatResult, names: dict[str, Text],
                bar_width: int | None = None) -> Table:
    """The files' names (as given) and counts, and their bars when given a width."""
    totals = result.totals
    table = Table(box=box.SIMPLE, show_footer=True, show_edge=False, pad_edge=False)
    table.add_column("file", footer="total", no_wrap=True)
    for title, total in (("inserted", totals.inserted), ("deleted", totals.deleted),
                         ("modified", totals.modified)):
        table.add_column(title, footer=str(total), justify="right", no_wrap=True)
    if bar_width is not None:
        table.add_column("", no_wrap=True)
    scale = max((f.changed for f in result.files), default=0)
    for stat in result.files:
        bar = [] if bar_width is None else [_bar(stat, scale, bar_width)]
        table.add_row(names[stat.name], *_numbers(stat), *bar)
    return table


def _path_lines(name: str, width: int) -> Text:
    """NAME on lines of WIDTH at most, broken only after a '/' (a file or folder name
    longer than WIDTH has a line of its own, whole)."""
    lines = [""]
    for part in re.findall(r"[^/]*/|[^/]+$", name):  # each folder keeps its '/'
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return Text("\n".join(lines))


def _numbers(stat: FileStat) -> tuple[str, str, str]:
    return str(stat.inserted), str(stat.deleted), str(stat.modified)


def _bar(stat: FileStat, scale: int, width: int) -> Text:
    if stat.kind != "text":
        return Text(stat.kind)  # "binary" or "only", where diffstat draws no bar
    bar = histogram((stat.inserted, stat.deleted, stat.modified), scale, width)
    text = Text()
    for mark, style in MARKS:
        text.append(mark * bar.count(mark), style=style)
    return text


def _share_line(result: DiffstatResult, measure: str = "lines") -> Text:
    """Xen's figure: lines modified or added, of the baseline's lines."""
    unit = "baseline lines" if measure == "lines" else "baseline code lines (--sloc)"
    text = Text(f"lines modified or added: {result.totals.added_or_modified} "
                f"of {result.baseline_lines} {unit}")
    if result.share_percent is not None:
        text.append(f" ({result.share_percent:.2f}%)", style="bold")
    return text
