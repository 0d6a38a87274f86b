"""What `pvtool patch` prints. By default a summary that fits 80 columns whatever the
kernel's size (Linux: thousands of sites): the sites by class and placement, the trap
sites with their reasons, the kept sites counted by reason, the coverage, and what was
written where. With --sites, every site first. Addresses never wrap or shrink; reasons
wrap in their column. The JSON report holds every site."""

from collections import Counter, defaultdict
from collections.abc import Callable

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pvtool.patch.plan import Placement
from pvtool.patch.report import PatchReport, SiteRecord
from pvtool.views.widths import room_beside

PLACEMENT_STYLE = {"in-place": "green", "detour": "cyan", "trap": "yellow", "kept": "dim"}
PLACEMENT_MEANING = {
    Placement.IN_PLACE: "rewritten within the instruction's own bytes",
    Placement.DETOUR: "a jump to a stub that does the work, then back",
    Placement.TRAP: "left to fault in the deprivileged kernel, where the hypervisor emulates it",
    Placement.KEPT: "left as is, right as it stands deprivileged (its reason says why)",
}
SUMMARY_ROWS = 8  # a summary table's rows at most; the last counts the rest
CLASSES_SHOWN = 4  # of the classes a kept reason covers
ADDRESS_WIDTH = len(f"{0:#010x}")  # a 32-bit address, always printed whole
WHY_WIDTH = 40  # the why column's least width beside a site's other columns
STACKED = "symbol  instruction, then why"
COVERAGE = {"recursion": "recursion from the entry", "symbols": "function symbols",
            "pointers": "pointers", "prologues": "function prologues", "data": "data",
            "sweep": "possible code (sweep)", "undecodable": "undecodable"}
EVERY_SITE = "`pvtool patch --sites` lists every site"


def render(report: PatchReport, console: Console, sites: bool = False) -> None:
    if sites:
        console.print(site_table(report, console))
        console.print()
    console.print(Text(f"{report.input.name}: {len(report.sites)} sites "
                       f"({report.patch_set})", style="bold"))
    console.print(class_table(report))
    for placement in Placement:
        console.print(Text(f"{placement.value}: {PLACEMENT_MEANING[placement]}",
                           style="dim"), soft_wrap=False)
    for table in (trap_table(report), kept_table(report), coverage_table(report)):
        console.print()
        console.print(table)
    console.print()
    for line in closing_lines(report):
        console.print(line, soft_wrap=False)  # wrapped by word at the terminal's width


def site_table(report: PatchReport, console: Console) -> Table:
    """Every site by address, its address and placement whole. Where the why column
    would be narrower than WHY_WIDTH beside the rest, it goes under the site's symbol
    and instruction in one last column, so that a reason wraps but is never cut."""
    title = f"{report.input.name}: every site, by address"
    beside = _site_columns(_table(title), ("symbol", "instruction"))
    for site in report.sites:
        beside.add_row(*_site_cells(site), Text(site.symbol), Text(site.instruction))
    if room_beside(console, beside) >= WHY_WIDTH:
        table = _site_columns(_table(title), ("symbol", "instruction", "why"))
        for site in report.sites:
            table.add_row(*_site_cells(site), Text(site.symbol), Text(site.instruction),
                          Text(site.reason))
        return table
    table = _site_columns(_table(title), (STACKED,))
    for site in report.sites:
        table.add_row(*_site_cells(site), Text.assemble(
            f"{site.symbol}  {site.instruction}\n", (site.reason, "dim")))
    return table


def _site_columns(table: Table, wrapped: tuple[str, ...]) -> Table:
    table.add_column("address", no_wrap=True, min_width=ADDRESS_WIDTH)
    table.add_column("placement", no_wrap=True)
    table.add_column("class", no_wrap=True)
    for name in wrapped:
        table.add_column(name, overflow="fold")
    return table


def _site_cells(site: SiteRecord) -> tuple:
    return _address(site), Text(site.placement, PLACEMENT_STYLE[site.placement]), site.cls


def class_table(report: PatchReport) -> Table:
    """Sites by class (rows, the most first) and placement (columns): how the port was
    made."""
    placements = [p.value for p in Placement]
    table = _table("Sites by class and placement")
    table.add_column("class", no_wrap=True)
    table.add_column("sites", justify="right", no_wrap=True)
    for name in placements:
        table.add_column(name, justify="right", no_wrap=True)

    def add(sites: list[SiteRecord], name: str) -> None:
        counts = Counter(s.placement for s in sites)
        table.add_row(name, str(len(sites)), *(str(counts[p]) for p in placements))

    shown, rest = _largest(_groups(report.sites, lambda s: s.cls))
    for sites in shown:
        add(sites, sites[0].cls)
    if rest:
        add(_joined(rest), f"{len(rest)} more")
    table.add_section()
    add(list(report.sites), "total")
    return table


def trap_table(report: PatchReport) -> Table:
    """The trap sites by class and reason: the ones that cost a fault at run time."""
    traps = [s for s in report.sites if s.placement == Placement.TRAP.value]
    table = _table(f"Trap sites: {len(traps)}")
    table.add_column("sites", justify="right", no_wrap=True)
    table.add_column("class", no_wrap=True)
    table.add_column("first at", no_wrap=True, min_width=ADDRESS_WIDTH)
    table.add_column("why", overflow="fold")
    shown, rest = _largest(_groups(traps, lambda s: (s.cls, s.reason)))
    for sites in shown:
        table.add_row(str(len(sites)), sites[0].cls, _address(sites[0]), Text(sites[0].reason))
    if rest:
        table.add_row(str(len(_joined(rest))), "", "",
                      f"{len(rest)} more reasons: {EVERY_SITE}")
    return table


def kept_table(report: PatchReport) -> Table:
    """The kept sites counted by reason, with the classes each reason covers."""
    kept = [s for s in report.sites if s.placement == Placement.KEPT.value]
    table = _table(f"Kept sites: {len(kept)}")
    table.add_column("sites", justify="right", no_wrap=True)
    table.add_column("classes")
    table.add_column("why", overflow="fold")
    shown, rest = _largest(_groups(kept, lambda s: s.reason))
    for sites in shown:
        table.add_row(str(len(sites)), _some(sorted({s.cls for s in sites})),
                      Text(sites[0].reason))
    if rest:
        table.add_row(str(len(_joined(rest))), "", f"{len(rest)} more reasons: {EVERY_SITE}")
    return table


def coverage_table(report: PatchReport) -> Table:
    """The executable bytes by how discovery accounted for them, and their share."""
    total = sum(report.coverage.values())
    table = _table(f"Coverage: {total:,} executable bytes")
    table.add_column("accounted for by", no_wrap=True)
    table.add_column("bytes", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    for key, name in COVERAGE.items():
        count = report.coverage[key]
        table.add_row(name, f"{count:,}", f"{100 * count / total:.1f}%" if total else "-")
    return table


def closing_lines(report: PatchReport) -> list[str]:
    """The possible code to check, the checks that passed and the files written."""
    return [_possible_code(report),
            "verified: " + "; ".join(report.checks),
            f"wrote {report.output} (glue {report.glue_bytes} bytes, stubs "
            f"{report.stub_bytes} bytes), {report.diff_path} (listing diff), "
            f"{report.report_path} (JSON report: every site)"]


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


def _table(title: str) -> Table:
    """A compact table: a rule under the header, no frame, to leave room in 80 columns."""
    return Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                 show_edge=False, pad_edge=False)


def _address(site: SiteRecord) -> str:
    return f"{site.address:#010x}"


def _groups(sites, key: Callable) -> list[list[SiteRecord]]:
    groups: dict[object, list[SiteRecord]] = defaultdict(list)
    for site in sites:
        groups[key(site)].append(site)
    return list(groups.values())


def _largest(groups: list[list[SiteRecord]]) -> tuple[list, list]:
    """The groups a summary shows (the largest first, then by address) and the rest, so
    that with the row counting the rest a table has SUMMARY_ROWS rows at most."""
    groups = sorted(groups, key=lambda g: (-len(g), g[0].address))
    if len(groups) <= SUMMARY_ROWS:
        return groups, []
    return groups[:SUMMARY_ROWS - 1], groups[SUMMARY_ROWS - 1:]


def _some(names: list[str]) -> str:
    more = len(names) - CLASSES_SHOWN
    return ", ".join(names[:CLASSES_SHOWN]) + (f" and {more} more" if more > 0 else "")


def _joined(groups: list[list[SiteRecord]]) -> list[SiteRecord]:
    return [site for group in groups for site in group]
