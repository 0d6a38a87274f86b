"""What `pvtool run` prints beside the guest: --trace gives every hypercall's arguments
in hex (pointers, frames and handles read as addresses, as Xen's traces print them),
and the summary says why its instruction count is only an upper bound."""

import re
from pathlib import Path

import pytest

from tests.cli import patched_guest, pvtool

HEX = r"0x[0-9a-f]+"
TRACED_HYPERCALL = re.compile(
    rf"hypercall \w+\(({HEX}(, {HEX})*)?\)( = ({HEX}|-E[A-Z]+)|: -E[A-Z]+ .*)")


@pytest.fixture(scope="module")
def hello_pv(tmp_path_factory) -> Path:
    return patched_guest("hello", tmp_path_factory.mktemp("pv"))


def test_trace_prints_hypercall_arguments_and_results_in_hex(hello_pv):
    done = pvtool("run", "--quiet", "--trace", hello_pv)
    assert done.status == 0
    traced = [line for line in done.stderr.splitlines() if line.startswith("hypercall ")]
    assert traced
    assert [line for line in traced if not TRACED_HYPERCALL.fullmatch(line)] == []
    assert any("set_trap_table(0x" in line for line in traced)


def test_the_summary_says_why_its_count_is_at_most(hello_pv):
    done = pvtool("run", hello_pv)
    assert done.status == 0
    assert re.search(r"at most [\d,]+ instructions \(slices counted whole, even one cut "
                     r"short by hlt or the stop\)", done.stderr)
