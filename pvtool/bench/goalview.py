"""The tables of issue 17's goals in `pvtool bench`: the exits each nanobench
operation takes in each mode (goal 5, bench/opexits.py) and the goals' verdicts
(bench/goals.py), read from the same dictionary `--json` writes."""

from rich import box
from rich.table import Table

from pvtool.bench.notes import fold

HYPERCALL = "hypercall"  # the exit kind whose exits are shown by hypercall too


def operation_exits_tables(guest: dict) -> list[Table]:
    """Issue 17's goal 5: for each operation, the exits it takes by kind in each mode
    (a hypercall's by name too) and their host cost (bench/opexits.py), and the whole
    operation's time by its own rdtsc; [] when it was not measured."""
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
        for kind, cells in _kind_rows(row, modes):
            table.add_row(kind, *cells, style="dim")
        table.add_row("  whole op, rdtsc", *(cell for mode in modes
                                              for cell in _rdtsc_cells(row.get(mode))),
                      style="italic")
    table.caption = "\n".join([
        fold(f"Per operation: {exits['method']}. whole op, rdtsc: the operation's cycles "
             "in the timed runs (the per-operation cost table) over the host's TSC rate: "
             "the exits' us are their Python alone, without the guest code between them."),
        *(fold(f"{mode}: not measured: {error}") for mode, error in exits["errors"].items())])
    table.caption_justify = "left"
    return [table]


def _kind_rows(row: dict, modes: list[str]) -> list[tuple[str, list[str]]]:
    """An operation's exit kinds in every mode, each hypercall under its kind."""
    kinds = sorted({kind for figure in row.values() if figure for kind in figure["exits"]})
    rows = []
    for kind in kinds:
        rows.append((f"  {kind}", [cell for mode in modes
                                   for cell in _exit_cells(row.get(mode), "exits", kind)]))
        if kind != HYPERCALL:
            continue
        names = sorted({name for figure in row.values() if figure
                        for name in figure.get("hypercall_exits", {})})
        rows += [(f"    {name}", [cell for mode in modes for cell
                                  in _exit_cells(row.get(mode), "hypercall_exits", name)])
                 for name in names]
    return rows


def _exit_cells(figure: dict | None, by: str = "", key: str | None = None) -> list[str]:
    """An operation's exits and host us in one mode: in all, or of KEY (an exit kind
    with BY "exits", a hypercall with BY "hypercall_exits")."""
    if figure is None:
        return ["-", "-"]
    if key is None:
        return [f"{figure['exits_per_op']:,.2f}", f"{figure['host_us_per_op']:,.1f}"]
    if key not in figure.get(by, {}):
        return ["", ""]
    host = figure["host_us" if by == "exits" else "hypercall_host_us"]
    return [f"{figure[by][key]:,.2f}", f"{host[key]:,.1f}"]


def _rdtsc_cells(figure: dict | None) -> list[str]:
    us = (figure or {}).get("rdtsc_us_per_op")
    return ["", f"{us:,.1f}" if us is not None else "-"]


def goals_table(goals: list[dict]) -> Table:
    """Issue 17's goals (bench/goals.py): each one's ratio in this run, beside goal 1's
    exits (its floor), its target and whether it is met; a goal not measured here says
    why below."""
    table = Table(box=box.SIMPLE_HEAD, title="Issue 17's goals, from this run's figures",
                  title_justify="left", pad_edge=False, collapse_padding=True)
    for name in ("goal", "measure", "guest", "exits", "ratio", "target", "verdict"):
        table.add_column(name, no_wrap=True, justify="left" if name in (
            "measure", "guest", "verdict") else "right")
    footnotes = []
    for row in goals:
        verdict = {True: "[green]met[/]", False: "[red]not met[/]",
                   None: "[yellow]not measured[/]"}[row["met"]]
        ratio = f"{row['ratio']:,.2f}x" if row["ratio"] is not None else "-"
        exits = row["exits_per_op"]
        guest = row["guest"] or (f"{row['bits']}-bit" if row["bits"] else "-")
        table.add_row(str(row["goal"]), row["name"], guest,
                      f"{exits:,.2f}" if exits is not None else "",
                      ratio, f"{row['target']:g}x", verdict)
        if row["note"]:
            which = f", {guest}" if guest != "-" else ""
            footnotes.append(fold(f"{row['goal']} {row['name']}{which}: {row['note']}"))
    table.caption = "\n".join([
        "ratio: goal 1 in null hypercalls of the guest's width (PV cyc/op over a",
        "null hypercall's), goal 2 in empty hooks, goal 3 pvtool's native run",
        "loop over QEMU's run less its start-up (a guest's class by its native",
        "exits a million insns). exits: goal 1's exits an operation under PV,",
        "each costing about a null hypercall at least: the ratio's floor.",
        *footnotes])
    table.caption_justify = "left"
    return table
