"""What `pvtool patch` prints: a summary that fits 80 columns for a kernel of any size
(the sites by class and placement, the trap sites with their reasons, the kept sites
counted by reason, the coverage), every site behind --sites, and no address or reason
ever cut, at 80 or 200 columns or into a log. The expected figures come from the JSON
report the patch wrote, never from the view."""

import io
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from pvtool.console import UNBOUNDED_WIDTH, TerminalConsole
from pvtool.patch.pipeline import patch_image
from pvtool.patch.possible_code import PossibleCode, RunWithSites, SectionSummary
from pvtool.patch.report import PatchReport, SiteRecord
from pvtool.views.patch_view import STACKED, SUMMARY_ROWS, render
from tests.cli import pvtool
from tests.oracles import guest_path

GUESTS = ["hello", "minikern", "datatext"]
WIDTHS = [80, 120, 200, None]  # None: a log, a console that is not a terminal
PLACEMENTS = ["in-place", "detour", "trap", "kept"]
RULE = "─"


@pytest.fixture(scope="module")
def patched(tmp_path_factory) -> dict[str, tuple[PatchReport, dict]]:
    """Each guest's report, and the JSON report the patch wrote beside the image."""
    folder = tmp_path_factory.mktemp("patched")
    reports = {}
    for name in GUESTS:
        report = patch_image(guest_path(name), folder / f"{name}.pv.elf", "xen32")
        reports[name] = report, json.loads(report.report_path.read_text())
    return reports


def printed(report: PatchReport, width: int | None, sites: bool = False) -> str:
    """What render prints at WIDTH columns, or into a file when WIDTH is None."""
    out = io.StringIO()
    console = (TerminalConsole(file=out, color_system=None) if width is None
               else Console(file=out, width=width, color_system=None))
    render(report, console, sites)
    return out.getvalue()


def table(text: str, title: str) -> tuple[str, list[list[str]]]:
    """The header and lines of the table whose title starts with TITLE: the lines
    between the rule under its header and the blank line after it."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rule = next(i for i in range(start, len(lines)) if lines[i].startswith(RULE))
    end = next((i for i in range(rule, len(lines)) if not lines[i].strip()), len(lines))
    return lines[rule - 1], lines[rule + 1:end]


def cells(header: str, names: list[str], rows: list[str]) -> list[dict[str, str]]:
    """Rows of a table of left-justified columns: a line that starts in the first
    column starts a row; the lines under it continue its wrapped cells."""
    starts = [header.index(name) for name in names] + [None]
    records: list[dict[str, list[str]]] = []
    for line in rows:
        if line[:starts[1]].strip():
            records.append({name: [] for name in names})
        for name, begin, end in zip(names, starts, starts[1:], strict=False):
            records[-1][name].append(line[begin:end].strip())
    return [{name: " ".join(filter(None, parts)) for name, parts in r.items()}
            for r in records]


def squeezed(text: str) -> str:
    """TEXT without its whitespace: a wrapped cell equals its text joined this way."""
    return "".join(text.split())


def listed_sites(text: str, title: str) -> list[tuple[str, str, str, str]]:
    """The site table's rows: address, placement, class and the rest of the row (symbol,
    instruction and why, beside each other or stacked) without whitespace."""
    header, rows = table(text, title)
    wrapped = [STACKED] if STACKED in header else ["symbol", "instruction", "why"]
    return [(r["address"], r["placement"], r["class"], squeezed("".join(r[n] for n in wrapped)))
            for r in cells(header, ["address", "placement", "class", *wrapped], rows)]


def counted_rows(rows: list[str]) -> dict[str, list[int]]:
    """A row of a name then numbers: its name (which may hold spaces) -> its numbers."""
    parsed = {}
    for row in rows:
        words = row.split()
        name = len(words)
        while words[name - 1].isdigit():
            name -= 1
        parsed[" ".join(words[:name])] = [int(n) for n in words[name:]]
    return parsed


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("guest", GUESTS)
def test_every_site_is_listed_whole_with_its_reason(patched, guest, width):
    report, written = patched[guest]
    text = printed(report, width, sites=True)
    assert listed_sites(text, f"{report.input.name}: every site") == [
        (s["address"], s["placement"], s["class"],
         squeezed(s["symbol"] + s["instruction"] + s["reason"])) for s in written["sites"]]
    assert max(map(len, text.splitlines())) <= (width or UNBOUNDED_WIDTH)


@pytest.mark.parametrize("guest", GUESTS)
def test_a_log_gets_every_reason_on_one_line(patched, guest):
    report, written = patched[guest]
    lines = printed(report, None, sites=True).splitlines()
    for site in written["sites"]:
        assert any(site["address"] in line and site["reason"] in line for line in lines)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("guest", GUESTS)
def test_the_summary_counts_are_the_reports(patched, guest, width):
    report, written = patched[guest]
    text = printed(report, width)
    sites = written["sites"]
    header, rows = table(text, "Sites by class and placement")
    shown = counted_rows(rows)
    by_class = {}
    for cls in {s["class"] for s in sites}:
        of_class = [s for s in sites if s["class"] == cls]
        by_class[cls] = [len(of_class)] + [sum(s["placement"] == p for s in of_class)
                                           for p in PLACEMENTS]
    hidden = [cls for cls in by_class if cls not in shown]
    for cls, numbers in shown.items():
        if cls == "total":
            assert numbers == [len(sites)] + [written["placements"][p] for p in PLACEMENTS]
        elif cls.endswith(" more"):
            assert cls == f"{len(hidden)} more"
            assert numbers == [sum(by_class[c][i] for c in hidden) for i in range(5)]
        else:
            assert numbers == by_class[cls]
    assert len(shown) <= SUMMARY_ROWS + 1
    assert f"Trap sites: {written['placements']['trap']}" in text
    assert f"Kept sites: {written['placements']['kept']}" in text
    assert "every site, by address" not in text


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("guest", GUESTS)
def test_the_summary_gives_each_trap_and_kept_reason_whole(patched, guest, width):
    report, written = patched[guest]
    text = printed(report, width)
    traps = Counter((s["class"], s["reason"]) for s in written["sites"]
                    if s["placement"] == "trap")
    header, rows = table(text, "Trap sites")
    listed = cells(header, ["sites", "class", "first at", "why"], rows)
    assert {(r["class"], squeezed(r["why"])): int(r["sites"]) for r in listed} == \
        {(cls, squeezed(why)): n for (cls, why), n in traps.items()}
    firsts = {r["first at"] for r in listed}
    assert firsts <= {s["address"] for s in written["sites"]}
    kept = Counter(s["reason"] for s in written["sites"] if s["placement"] == "kept")
    header, rows = table(text, "Kept sites")
    listed = cells(header, ["sites", "classes", "why"], rows)
    assert {squeezed(r["why"]): int(r["sites"]) for r in listed} == \
        {squeezed(why): n for why, n in kept.items()}


@pytest.mark.parametrize("guest", GUESTS)
def test_the_coverage_is_the_reports_in_bytes_and_share(patched, guest):
    report, written = patched[guest]
    text = printed(report, 80)
    coverage = written["coverage_bytes"]
    total = sum(coverage.values())
    assert f"Coverage: {total:,} executable bytes" in text
    header, rows = table(text, "Coverage")
    numbers = sorted(int(row.split()[-2].replace(",", "")) for row in rows)
    assert numbers == sorted(coverage.values())
    shares = [float(row.split()[-1].rstrip("%")) for row in rows]
    assert sum(shares) == pytest.approx(100, abs=0.05 * len(shares))


def linux_sized() -> PatchReport:
    """A report shaped like Debian's vmlinux's: 4,105 sites of 38 classes, 91 trap
    sites of 48 reasons, kept sites of 5 reasons."""
    sites = []
    for i in range(4105):
        placement = "trap" if i < 91 else "kept" if i % 2 else "detour"
        reason = (f"branch targets at {0xc1000000 + i:#x} cut every 5-byte window that "
                  f"holds it" if i < 47 else f"reason {i % 5}: " + "why " * 30)
        sites.append(SiteRecord(0xc1000000 + 16 * i, "?", "cli", f"class{i % 38}",
                                "privileged", placement, reason, "recursion", None))
    return PatchReport(Path("vmlinux"), Path("vmlinux.pv.elf"), Path("vmlinux.pv.diff"),
                       Path("vmlinux.pv.json"), "xen32", tuple(sites), 1000,
                       {"recursion": 10, "symbols": 0, "pointers": 0, "prologues": 0,
                        "data": 0, "sweep": 0, "undecodable": 0}, 100, 50, ("ok",))


def test_a_linux_sized_summary_is_short_and_fits_80_columns():
    report = linux_sized()
    reasons = len({(s.cls, s.reason) for s in report.sites if s.placement == "trap"})
    text = printed(report, 80)
    lines = text.splitlines()
    assert len(lines) < 90 and max(map(len, lines)) <= 80
    header, rows = table(text, "Trap sites: 91")
    listed = cells(header, ["sites", "class", "first at", "why"], rows)
    assert len(listed) == SUMMARY_ROWS
    assert sum(int(r["sites"]) for r in listed) == 91
    assert listed[-1]["why"].startswith(f"{reasons - SUMMARY_ROWS + 1} more reasons")
    assert all(len(r["first at"]) == 10 for r in listed[:-1])


def test_linux_sites_keep_every_address_and_reason_at_80_columns():
    report = replace(linux_sized(), sites=linux_sized().sites[:500])  # its first sites
    text = printed(report, 80, sites=True)
    assert listed_sites(text, "vmlinux: every site") == [
        (f"{s.address:#010x}", s.placement, s.cls, squeezed(s.symbol + s.instruction + s.reason))
        for s in report.sites]


def test_piped_patch_output_is_not_squeezed_to_80_columns(tmp_path):
    done = pvtool("patch", guest_path("minikern"), "-o", tmp_path / "m.elf", "--sites",
                  env={"COLUMNS": "80"})
    assert done.status == 0, done.stderr
    written = json.loads((tmp_path / "m.json").read_text())
    lines = done.stdout.splitlines()
    for site in written["sites"]:
        assert any(site["address"] in line and site["reason"] in line for line in lines)


def test_a_console_is_as_wide_as_its_terminal_and_unbounded_into_a_file():
    terminal = TerminalConsole(file=io.StringIO(), force_terminal=True,
                               _environ={"COLUMNS": "80"})
    log = TerminalConsole(file=io.StringIO(), _environ={"COLUMNS": "80"})
    told = TerminalConsole(file=io.StringIO(), width=80)
    assert (terminal.width, log.width, told.width) == (80, UNBOUNDED_WIDTH, 80)


def test_the_possible_code_summary_is_one_line_by_section():
    summary = PossibleCode({".text": SectionSummary(3, 40, 2, 30),
                            ".init.text": SectionSummary(1, 7)},
                           (RunWithSites(0x1000, 0x1007, ".init.text", (0x1002, 0x1004)),))
    text = printed(replace(linux_sized(), possible_code=summary), 200)
    assert ("possible code: 47 bytes in 4 runs (.init.text 7 bytes in 1 runs, .text 40 "
            "bytes in 3 runs); 30 bytes in 2 runs are alignment padding; 2 sites in 1 runs "
            "kept as is, listed in vmlinux.pv.json") in text.replace("\n", " ")
