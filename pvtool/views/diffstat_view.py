"""The table `pvtool diffstat` prints: diffstat's histogram, Xen's share, its summary."""

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pvtool.diffstat import DiffstatResult, FileStat

BAR_WIDTH = 30  # histogram columns; longer files are scaled down, as diffstat does
MARKS = (("+", "green"), ("-", "red"), ("!", "cyan"))  # diffstat -C's colours


def render(result: DiffstatResult, console: Console) -> None:
    console.print(_table(result))
    if result.baseline_lines is not None:
        console.print(_share_line(result), highlight=False)
    console.print(result.summary_line(), markup=False, highlight=False)


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


def _table(result: DiffstatResult) -> Table:
    totals = result.totals
    table = Table(box=box.SIMPLE, show_footer=True, show_edge=False, pad_edge=False)
    table.add_column("file", footer="total")
    for title, total in (("inserted", totals.inserted), ("deleted", totals.deleted),
                         ("modified", totals.modified)):
        table.add_column(title, footer=str(total), justify="right")
    table.add_column("")
    scale = max((f.changed for f in result.files), default=0)
    for stat in result.files:
        table.add_row(Text(stat.name), *_numbers(stat), _bar(stat, scale))  # no markup
    return table


def _numbers(stat: FileStat) -> tuple[str, str, str]:
    return str(stat.inserted), str(stat.deleted), str(stat.modified)


def _bar(stat: FileStat, scale: int) -> Text:
    if stat.kind != "text":
        return Text(stat.kind)  # "binary" or "only", where diffstat draws no bar
    bar = histogram((stat.inserted, stat.deleted, stat.modified), scale)
    text = Text()
    for mark, style in MARKS:
        text.append(mark * bar.count(mark), style=style)
    return text


def _share_line(result: DiffstatResult) -> Text:
    """Xen's figure: lines modified or added, of the baseline's lines."""
    text = Text(f"lines modified or added: {result.totals.added_or_modified} "
                f"of {result.baseline_lines} baseline lines")
    if result.share_percent is not None:
        text.append(f" ({result.share_percent:.2f}%)", style="bold")
    return text
