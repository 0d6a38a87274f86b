"""What `pvtool patch` prints: the sites by class and placement always; every site for
a small kernel; for a kernel with more sites than a screen holds, its trap sites
grouped by reason instead (the JSON report keeps every site)."""

from dataclasses import replace
from pathlib import Path

from rich.console import Console

from pvtool.patch.possible_code import PossibleCode, RunWithSites, SectionSummary
from pvtool.patch.report import PatchReport, SiteRecord
from pvtool.views.patch_view import ADDRESSES_SHOWN, SITE_ROWS, render

KEPT_REASON = "port I/O: the domain has I/O privilege"
TRAP_REASON = "no run of whole, movable instructions of 5 bytes holds it"


def site(address: int, cls: str, placement: str, reason: str) -> SiteRecord:
    return SiteRecord(address, "?", cls, cls, "privileged", placement, reason, "recursion",
                      None)


def report(sites: list[SiteRecord]) -> PatchReport:
    return PatchReport(Path("vmlinux"), Path("vmlinux.pv.elf"), Path("vmlinux.pv.diff"),
                       Path("vmlinux.pv.json"), "xen32", tuple(sites), 1000,
                       {"recursion": 10, "symbols": 0, "pointers": 0, "prologues": 0,
                        "data": 0, "sweep": 0, "undecodable": 0}, 100, 50, ("ok",))


def printed(rep: PatchReport) -> str:
    console = Console(width=200, record=True, force_terminal=False)
    render(rep, console)
    return console.export_text()


def test_a_large_kernel_gets_its_trap_sites_by_reason_and_the_class_table():
    kept = [site(0x1000 + i, "out", "kept", KEPT_REASON) for i in range(SITE_ROWS)]
    traps = [site(0x9000 + i, "hlt", "trap", TRAP_REASON) for i in range(ADDRESSES_SHOWN + 2)]
    text = printed(report(kept + traps))
    assert f"{len(kept) + len(traps)} sites (xen32), {len(traps)} trap sites" in text
    row = next(line for line in text.splitlines() if TRAP_REASON in line)
    assert f"{len(traps)} " in row and "0x9000" in row and "and 2 more" in row
    assert KEPT_REASON not in text  # no row per site
    cells = {line.split("│")[1].strip(): line.split("│")[2:-1] for line in text.splitlines()
             if line.startswith("│") and len(line.split("│")) == 8}  # the class table
    assert [int(c) for c in cells["total"]] == [0, 0, len(traps), len(kept),
                                               len(kept) + len(traps)]
    assert [int(c) for c in cells["hlt"]] == [0, 0, len(traps), 0, len(traps)]

def test_a_small_kernel_gets_every_site():
    sites = [site(0x1000, "out", "kept", KEPT_REASON), site(0x2000, "hlt", "trap", TRAP_REASON)]
    text = printed(report(sites))
    assert KEPT_REASON in text and "0x00001000" in text and "0x00002000" in text
    assert "Sites by class and placement" in text


def test_the_possible_code_summary_is_one_line_by_section():
    summary = PossibleCode({".text": SectionSummary(3, 40, 2, 30),
                            ".init.text": SectionSummary(1, 7)},
                           (RunWithSites(0x1000, 0x1007, ".init.text", (0x1002, 0x1004)),))
    text = printed(replace(report([]), possible_code=summary))
    assert ("possible code: 47 bytes in 4 runs (.init.text 7 bytes in 1 runs, .text 40 "
            "bytes in 3 runs); 30 bytes in 2 runs are alignment padding; 2 sites in 1 runs "
            "kept as is, listed in vmlinux.pv.json") in text.replace("\n", " ")
