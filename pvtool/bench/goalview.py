"""The tables of issue 17's goals in `pvtool bench`: the exits each nanobench
operation takes in each mode (goal 5, bench/opexits.py) and the goals' verdicts
(bench/goals.py), read from the same dictionary `--json` writes."""

from rich import box
from rich.table import Table

from pvtool.bench.notes import fold


def operation_exits_tables(guest: dict) -> list[Table]:
    """Issue 17's goal 5: for each operation, the exits it takes by kind in each mode
    and their host cost (bench/opexits.py); [] when it was not measured."""
    exits = guest.get("operation_exits")
    if not exits:
        return []
    modes = list(next(iter(exits["operations"].values()), {})) or list(exits["errors"])
    table = Table(box=box.SIMPLE_HEAD, title=f"Exits per operation, {guest['name']} (alone, "
                  "profiled; us: host time)", title_justify="left",
                  collapse_padding=True)
    table.add_column("operation / exit", no_wrap=True)
    for mode in modes:
        table.add_column(f"{mode}\nexits", justify="right", no_wrap=True)
        table.add_column(f"{mode}\nus", justify="right", no_wrap=True)
    for name, row in exits["operations"].items():
        table.add_row(name, *(cell for mode in modes for cell in _exit_cells(row.get(mode))))
        kinds = sorted({kind for figure in row.values() if figure for kind in figure["exits"]})
        for kind in kinds:
            table.add_row(f"  {kind}", *(cell for mode in modes
                                         for cell in _exit_cells(row.get(mode), kind)),
                          style="dim")
    table.caption = "\n".join([fold(f"Per operation: {exits['method']}."),
                               *(fold(f"{mode}: not measured: {error}")
                                 for mode, error in exits["errors"].items())])
    table.caption_justify = "left"
    return [table]


def _exit_cells(figure: dict | None, kind: str | None = None) -> list[str]:
    """An operation's exits and host us in one mode: in all, or of KIND."""
    if figure is None:
        return ["-", "-"]
    if kind is None:
        return [f"{figure['exits_per_op']:,.2f}", f"{figure['host_us_per_op']:,.1f}"]
    if kind not in figure["exits"]:
        return ["", ""]
    return [f"{figure['exits'][kind]:,.2f}", f"{figure['host_us'][kind]:,.1f}"]


def goals_table(goals: list[dict]) -> Table:
    """Issue 17's goals (bench/goals.py): each one's ratio in this run, its target and
    whether it is met; a goal not measured here says why below."""
    table = Table(box=box.SIMPLE_HEAD, title="Issue 17's goals, from this run's figures",
                  title_justify="left", pad_edge=False, collapse_padding=True)
    for name in ("goal", "measure", "guest", "ratio", "target", "verdict"):
        table.add_column(name, no_wrap=True,
                         justify="right" if name in ("goal", "ratio", "target") else "left")
    footnotes = []
    for row in goals:
        verdict = {True: "[green]met[/]", False: "[red]not met[/]",
                   None: "[yellow]not measured[/]"}[row["met"]]
        ratio = f"{row['ratio']:,.2f}x" if row["ratio"] is not None else "-"
        table.add_row(str(row["goal"]), row["name"], row["guest"] or "-", ratio,
                      f"{row['target']:g}x", verdict)
        if row["note"]:
            footnotes.append(fold(f"{row['goal']} {row['name']}, {row['guest'] or 'no guest'}: "
                               f"{row['note']}"))
    table.caption = "\n".join([
        "ratio: goal 1 in null hypercalls (PV cyc/op over a null hypercall's),",
        "goal 2 in empty hooks, goal 3 pvtool's run loop over QEMU's run less",
        "its start-up (a guest's class by its native exits a million insns).",
        *footnotes])
    table.caption_justify = "left"
    return table
