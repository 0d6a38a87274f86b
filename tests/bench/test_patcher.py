"""The patcher's rows of `pvtool bench`: a real patch of minikern in a child process,
its instruction count objdump's and the patch report's, its sites the report's
and its Table 2 figures what `pvtool diffstat` says of the listing diff the patch wrote
(test_cli_bench.py checks the rows in `pvtool bench`'s table and JSON)."""

import json

import pytest

from pvtool.bench.patcher import INSNS_PER_SECOND_GOAL, measure_patcher, patcher_rows
from pvtool.diffstat import xen_table2
from tests.cli import pvtool
from tests.oracles import guest_path
from tests.patch.tools import objdump


@pytest.fixture(scope="module")
def minikern(tmp_path_factory):
    """(the image, the JSON report `pvtool patch` writes for it)."""
    elf = guest_path("minikern")
    out = tmp_path_factory.mktemp("patcher") / "minikern.pv.elf"
    result = pvtool("patch", elf, "-o", out)
    assert result.status == 0, result.output
    return elf, json.loads(out.with_suffix(".json").read_text())


def test_the_row_counts_what_the_patch_report_counts(minikern):
    elf, report = minikern
    run = measure_patcher(elf)
    # gcc's guests keep no data in .text: objdump's linear listing is every instruction
    assert run.instructions == report["instructions"] == len(objdump(elf))
    assert run.sites == len(report["sites"]) > 0
    assert 0 < run.seconds < 60
    assert run.insns_per_second == pytest.approx(run.instructions / run.seconds)
    assert run.peak_kib >= run.baseline_kib > 0 and run.source == "VmHWM"
    row = run.to_dict()
    assert row["insns_per_second"] == round(run.instructions / run.seconds)
    assert row["within_goal"] == (run.insns_per_second >= INSNS_PER_SECOND_GOAL)


def test_an_image_the_patcher_refuses_is_a_row_with_its_reason(tmp_path, progress):
    bad = tmp_path / "bad.elf"
    bad.write_bytes(b"\x7fELF" + bytes(60))
    (row,) = patcher_rows([bad], progress)
    assert not row["ok"] and str(bad) in row["error"] and "Traceback" not in row["error"]



def test_the_rows_table2_figures_are_diffstats_of_the_patchs_listing_diff(minikern, tmp_path):
    elf, report = minikern
    out = tmp_path / "minikern.pv.elf"
    assert pvtool("patch", elf, "-o", out).status == 0
    measured = pvtool("diffstat", "--json", "-", out.with_suffix(".diff"))
    assert measured.status == 0, measured.output
    port = json.loads(measured.output)
    row = measure_patcher(elf).to_dict()["table2"]
    assert row["lines"] == port["lines_modified_or_added"] > 0
    assert row["share_percent"] == pytest.approx(100 * row["lines"] / report["instructions"])
    assert row["baseline_lines"] == report["instructions"]  # a listing line per insn
    assert (row["xen_linux_lines"], row["xen_linux_share_percent"]) == (
        xen_table2.LINUX_TOTAL, xen_table2.LINUX_SHARE_PERCENT)
