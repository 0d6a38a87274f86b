"""The 64-bit port in Table 2 (`make port-diffstat`): minikern's hand port beside its
automatic port by xen32 and minikern64's by xen64, each counted as Debian's
`diffstat -m` counts its listing diff, and the table within 80 columns."""

import json

import pytest

from pvtool.diffstat import xen_table2
from tests.cli import patched_guest, pvtool
from tests.test_diffstat_oracle import find_diffstat
from tests.test_diffstat_series import GUESTS, PORT, oracle_counts


@pytest.fixture(scope="module")
def listings(tmp_path_factory):
    """minikern's and minikern64's listing diffs from `pvtool patch` (xen32, xen64)."""
    folder = tmp_path_factory.mktemp("ports")
    return [patched_guest(name, folder).with_suffix(".diff")
            for name in ("minikern", "minikern64")]


def versus_args(listings) -> list:
    return [PORT, "--baseline", GUESTS, *(a for diff in listings for a in ("--versus", diff))]


def test_each_port_is_a_column_counted_as_diffstat_counts_it(listings):
    done = pvtool("diffstat", *versus_args(listings), "--json", "-")
    assert done.status == 0, done.output
    data = json.loads(done.stdout)
    program = find_diffstat()
    counted = [oracle_counts(program, diff) for diff in listings]
    columns = data["versus_all"]
    assert [c["lines_modified_or_added"] for c in columns] == [
        sum(i + m for i, _, m in count.values()) for count in counted]
    assert data["versus"] == columns[0]  # with one --versus, the only one
    assert all(c["input"]["kind"] == "listing diff" for c in columns)
    # the 64-bit port's row is its own: a listing of another kernel, its own baseline
    assert columns[1]["lines_modified_or_added"] != columns[0]["lines_modified_or_added"]


def test_the_64_bit_port_is_the_same_figure_from_its_two_images(listings, guests,
                                                                  tmp_path):
    """`pvtool diffstat minikern64.elf minikern64.pv.elf` measures the same port as its
    listing diff."""
    images = pvtool("diffstat", guests("minikern64"), listings[1].with_suffix(".elf"),
                    "--json", "-")
    diff = pvtool("diffstat", listings[1], "--json", "-")
    assert images.status == diff.status == 0, images.output + diff.output
    figures = [json.loads(done.stdout) for done in (images, diff)]
    assert figures[0]["lines_modified_or_added"] == figures[1]["lines_modified_or_added"] > 0


def test_the_table_has_both_ports_and_xens_linux_within_80_columns(listings):
    done = pvtool("diffstat", *versus_args(listings))
    assert done.status == 0, done.output
    data = json.loads(pvtool("diffstat", *versus_args(listings), "--json", "-").stdout)
    lines = done.stdout.splitlines()
    table = lines[:lines.index(next(x for x in lines if x.startswith("portion"))) + 1]
    assert max(map(len, table[1:])) <= 80, "\n".join(table)  # the title names the input
    header = "\n".join(table[:4])
    assert "versus" in header and "Linux" in header and "XP" not in header
    total = next(line for line in table if line.startswith("total"))
    hand = data["lines_modified_or_added"]
    assert total.split()[1:] == ["0", str(hand), str(hand),
                                 *(str(c["lines_modified_or_added"])
                                   for c in data["versus_all"]),
                                 str(xen_table2.LINUX_TOTAL)]
    assert any(line.startswith("versus 2: listing diff") and "minikern64.pv.diff" in line
               for line in lines)
