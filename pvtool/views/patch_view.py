"""The table `pvtool patch` prints: every site, its placement and why."""

from rich.console import Console
from rich.table import Table

from pvtool.patch.report import PatchReport

PLACEMENT_STYLE = {"in-place": "green", "detour": "cyan", "trap": "yellow", "kept": "dim"}


def render(report: PatchReport, console: Console) -> None:
    table = Table(title=f"{report.input.name}: {len(report.sites)} sites "
                        f"({report.patch_set})", title_justify="left")
    for column in ("address", "symbol", "instruction", "class", "placement"):
        table.add_column(column, no_wrap=True)
    table.add_column("why (the JSON report has it whole)", max_width=60, no_wrap=True,
                     overflow="ellipsis")
    for site in report.sites:
        style = PLACEMENT_STYLE.get(site.placement, "")
        table.add_row(f"{site.address:#010x}", site.symbol, site.instruction, site.cls,
                      f"[{style}]{site.placement}[/]", site.reason)
    console.print(table)
    counts = ", ".join(f"{n} {p}" for p, n in sorted(report.placements.items()))
    console.print(f"placements: {counts or 'none'}; glue {report.glue_bytes} bytes, "
                  f"stubs {report.stub_bytes} bytes")
    c = report.coverage
    console.print(f"coverage: {c['recursion']} bytes by recursion from the entry, "
                  f"{c['symbols']} from symbols, {c['pointers']} from pointers, "
                  f"{c['prologues']} from prologues; "
                  f"{c['data']} data; {c['sweep']} possible code (sweep) in "
                  f"{len(report.possible_code)} runs, {c['undecodable']} undecodable")
    console.print("verified: " + "; ".join(report.checks))
    console.print(f"wrote {report.output}, {report.diff_path}, {report.report_path}")
