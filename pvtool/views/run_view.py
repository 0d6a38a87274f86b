"""The summary `pvtool run` prints on stderr after the guest stops."""

import textwrap

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pvtool.run import RunResult

# run.py's loop adds each slice's length whole: a slice a hlt or the stop cut short
# ran fewer, and counting them exactly would cost a hook per block (UNICORN.md).
UPPER_BOUND_WHY = "slices counted whole, even one cut short by hlt or the stop"


def render(result: RunResult, console: Console) -> None:
    # A stop the guest did not choose is pvtool's one error line (cli/): the title
    # names only its kind, so the reason is printed once.
    stop = result.stop
    title = stop.describe() if stop.guest_chose else stop.kind.value
    table = Table(title=f"{result.mode.value} run: {title}", title_justify="left")
    table.add_column("exit kind", no_wrap=True)
    table.add_column("count", justify="right", no_wrap=True)
    for kind, count in sorted(result.exits.items()):
        table.add_row(kind, str(count))
    for name, count in sorted(result.hypercalls.items()):
        table.add_row(f"  hypercall {name}", str(count))
    table.caption = (f"{result.wall_seconds * 1000:.1f} ms wall, {result.slices} slice(s), "
                     f"at most {result.insns_upper_bound:,} instructions ({UPPER_BOUND_WHY})")
    if result.screen is not None:
        table.caption += f"\n{result.screen.describe()}"
    console.print(table)
    if result.sensitive:
        _render_sensitive(result, console)


def _render_sensitive(result: RunResult, console: Console) -> None:
    """--trap: the sensitive instructions that ran on the CPU, where trapping could not
    virtualize them."""
    table = Table(title="sensitive instructions that ran untrapped (not virtualized)",
                  title_justify="left")
    table.add_column("address", no_wrap=True)
    table.add_column("instruction", overflow="fold")
    table.add_column("class", no_wrap=True)
    table.add_column("count", justify="right", no_wrap=True)
    for use in result.sensitive:
        table.add_row(f"{use.address:#010x}", Text(use.text), use.name, str(use.count))
    console.print(table)


def render_profile(profile: dict, mode: str, console: Console) -> None:
    """--profile: host time by exit kind, costliest first, then the emulator's share
    against pvtool's Python (machine/profile.py says how the time is cut)."""
    table = Table(title=f"{mode} run: host time by exit kind (--profile)",
                  title_justify="left")
    for name in ("exit kind", "count", "total ms", "mean us", "share"):
        table.add_column(name, no_wrap=True, justify="left" if name == "exit kind" else "right")
    wall = profile["wall_us"] or 1
    for row in profile["kinds"]:
        kind = row["kind"] if row["exit"] else f"({row['kind']})"
        table.add_row(kind, f"{row['count']:,}", f"{row['total_us'] / 1000:,.1f}",
                      f"{row['mean_us']:,.2f}", f"{row['share']:.1%}")
        for label in (label for label in profile["labels"] if label["kind"] == row["kind"]):
            table.add_row(f"  {label['name']}", f"{label['count']:,}",
                          f"{label['total_us'] / 1000:,.1f}", f"{label['mean_us']:,.2f}",
                          f"{label['total_us'] / wall:.1%}", style="dim")
    table.add_section()
    table.add_row("pvtool's Python", "", f"{profile['python_us'] / 1000:,.1f}", "",
                  f"{profile['python_share']:.1%}")
    table.add_row("emulator (guest code)", "", f"{profile['emulator_us'] / 1000:,.1f}", "",
                  f"{profile['emulator_share']:.1%}")
    table.caption = textwrap.fill(
        f"{profile['wall_us'] / 1000:,.1f} ms of the run loop's wall time. (In "
        "parentheses): not an exit (a hook that counts none, or the run loop between "
        "slices). Indented: the hypercall exits by hypercall (a multicall's entries "
        "are inside its exit). The emulator's time includes each hook's entry into Python.", 78)
    table.caption_justify = "left"
    console.print(table)
