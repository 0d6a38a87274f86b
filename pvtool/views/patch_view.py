"""The tables `pvtool patch` prints: the sites by class and placement (a row of Table 2
for a port of any size), every site with its placement and why, and the summary. A
kernel with more sites than a screen holds (Linux: thousands) gets its trap sites
with their reasons instead of every site; the JSON report has every site."""

from collections import Counter, defaultdict

from rich.console import Console
from rich.table import Table

from pvtool.patch.plan import Placement
from pvtool.patch.report import PatchReport, SiteRecord

PLACEMENT_STYLE = {"in-place": "green", "detour": "cyan", "trap": "yellow", "kept": "dim"}
SITE_ROWS = 200  # more sites than this: the trap sites alone, grouped by reason
ADDRESSES_SHOWN = 4  # of a group of trap sites


def render(report: PatchReport, console: Console) -> None:
    if len(report.sites) <= SITE_ROWS:
        console.print(_every_site(report))
    else:
        console.print(_trap_sites(report))
    console.print(_by_class(report))
    counts = ", ".join(f"{n} {p}" for p, n in sorted(report.placements.items()))
    console.print(f"placements: {counts or 'none'}; glue {report.glue_bytes} bytes, "
                  f"stubs {report.stub_bytes} bytes")
    c = report.coverage
    console.print(f"coverage: {c['recursion']} bytes by recursion from the entry, "
                  f"{c['symbols']} from symbols, {c['pointers']} from pointers, "
                  f"{c['prologues']} from prologues; "
                  f"{c['data']} data; {c['sweep']} possible code (sweep), "
                  f"{c['undecodable']} undecodable")
    console.print(_possible_code(report))
    console.print("verified: " + "; ".join(report.checks))
    console.print(f"wrote {report.output}, {report.diff_path}, {report.report_path}")


def _every_site(report: PatchReport) -> Table:
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
    return table


def _trap_sites(report: PatchReport) -> Table:
    """Trap sites grouped by class and reason, with the first few addresses."""
    groups: dict[tuple[str, str], list[SiteRecord]] = defaultdict(list)
    for site in report.sites:
        if site.placement == Placement.TRAP.value:
            groups[site.cls, site.reason].append(site)
    traps = sum(len(sites) for sites in groups.values())
    table = Table(title=f"{report.input.name}: {len(report.sites)} sites "
                        f"({report.patch_set}), {traps} trap sites, by reason",
                  title_justify="left", caption=f"{report.report_path} lists every site",
                  caption_justify="left")
    table.add_column("class", no_wrap=True)
    table.add_column("sites", justify="right")
    table.add_column("why", overflow="fold")
    table.add_column("at", overflow="fold")
    for (cls, reason), sites in sorted(groups.items(), key=lambda g: -len(g[1])):
        shown = ", ".join(f"{s.address:#x}" for s in sites[:ADDRESSES_SHOWN])
        more = f" and {len(sites) - ADDRESSES_SHOWN} more" if len(sites) > ADDRESSES_SHOWN else ""
        table.add_row(cls, str(len(sites)), reason, shown + more)
    return table


def _by_class(report: PatchReport) -> Table:
    """Sites by class (rows) and placement (columns): how the port was made."""
    placements = [p.value for p in Placement]
    counts = Counter((s.cls, s.placement) for s in report.sites)
    classes = sorted({s.cls for s in report.sites})
    table = Table(title="Sites by class and placement", title_justify="left")
    table.add_column("class", no_wrap=True)
    for name in (*placements, "total"):
        table.add_column(name, justify="right")
    for cls in classes:
        row = [counts[cls, p] for p in placements]
        table.add_row(cls, *map(str, row), str(sum(row)))
    totals = [sum(counts[cls, p] for cls in classes) for p in placements]
    table.add_row("total", *map(str, totals), str(sum(totals)), style="bold")
    return table


def _possible_code(report: PatchReport) -> str:
    """One line: the runs and bytes only the sweep decoded, the padding among them, the
    sections they lie in, and the sites in them a human should check."""
    p, total = report.possible_code, report.possible_code.total
    sections = ", ".join(f"{name} {s.bytes} bytes in {s.runs} runs"
                         for name, s in sorted(p.by_section.items()))
    sites = sum(len(run.sites) for run in p.with_sites)
    return (f"possible code: {total.bytes} bytes in {total.runs} runs "
            f"({sections or 'none'}); {total.padding_bytes} bytes in {total.padding_runs} "
            "runs are alignment padding; "
            f"{sites} sites in {len(p.with_sites)} runs kept as is, listed in "
            f"{report.report_path}")
