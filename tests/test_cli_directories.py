"""A directory where a file is expected: every command answers with one line on stderr
and its documented status (README, "Exit status"), never click's usage text."""

import pytest

from tests.cli import pvtool
from tests.oracles import guest_path


@pytest.mark.parametrize(("args", "status"), [
    (["run", "{dir}"], 66),
    (["run", "--native", "{dir}"], 66),
    (["run", "--native", "--disk", "{dir}", "{hello}"], 66),
    (["run", "--native", "--input", "{dir}", "{hello}"], 66),
    (["run", "--native", "--module", "{dir}", "{hello}"], 66),
    (["patch", "{dir}"], 66),
    (["patch", "{hello}", "-o", "{dir}"], 73),
    (["diffstat", "{dir}"], 66),
])
def test_a_directory_gets_one_line_and_its_status(tmp_path, args, status):
    names = {"dir": str(tmp_path), "hello": str(guest_path("hello"))}
    result = pvtool(*[a.format(**names) for a in args])
    assert result.status == status, result.output
    result.error_line()
    assert list(tmp_path.iterdir()) == []  # nothing was written into it
