"""highhalf (guests/highhalf, xv6's boot: linked at 0x80100000, entered at its physical
address with paging off, then 4 MiB pages) patched and booted paravirtualized. It
crashed inside pvtool's own PV entry (issue 12: the entry's stack, the builder's, was
not in the identity map, and the error blamed the guest's trap table). Now the entry
gets through, the kernel turns on its 4 MiB pages and builds its own tables, and it
stops where PV cannot follow it: its search for the MP table reads the BIOS data
area, which a PV domain does not have, and the error line names that place."""

from functools import partial

import pytest

from tests import cli
from tests.e2e.patched import patch_guest

pvtool = partial(cli.pvtool, process=True, timeout=120)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return pvtool("run", "--quiet", str(patch_guest("highhalf",
                                                    tmp_path_factory.mktemp("highhalf-pv"))))


def test_the_pv_entry_gets_a_higher_half_kernel_through_to_its_own_page_tables(run):
    lines = run.stdout.splitlines()
    assert lines[0].startswith("highhalf: linked at 0x80100000, entered at physical ")
    assert lines[0].endswith(" with paging off ok")
    assert lines[1].startswith("paging: 4 MiB pages at entry, then its own tables: ")
    assert lines[1].endswith(" ok")


def test_the_error_names_what_stopped_it_in_the_kernel_not_the_glue(run):
    assert run.status != 0
    assert "pvtool's glue" not in run.stderr
    assert "#PF at " in run.stderr and "<mpsearch1+" in run.stderr
