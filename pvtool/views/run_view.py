"""The summary `pvtool run` prints on stderr after the guest stops."""

from rich.console import Console
from rich.table import Table

from pvtool.run import RunResult


def render(result: RunResult, console: Console) -> None:
    table = Table(title=f"{result.mode.value} run: {result.stop.describe()}",
                  title_justify="left")
    table.add_column("exit kind")
    table.add_column("count", justify="right")
    for kind, count in sorted(result.exits.items()):
        table.add_row(kind, str(count))
    for name, count in sorted(result.hypercalls.items()):
        table.add_row(f"  hypercall {name}", str(count))
    table.caption = (f"{result.wall_seconds * 1000:.1f} ms wall, {result.slices} slice(s), "
                     f"at most {result.insns_upper_bound:,} instructions")
    console.print(table)
