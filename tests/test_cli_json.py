"""One rule for --json on every command: `--json FILE` writes the machine-readable result
to FILE whole (or not at all) and the human view still prints; `-` is standard output,
which then holds the JSON alone; `run` refuses `-`, whose standard output is the guest's
serial line; a file that is not a regular one (a pipe) is written straight through."""

import json
from pathlib import Path

import pytest

from tests.cli import patched_guest, pvtool
from tests.oracles import guest_path

EX_USAGE = 64


@pytest.fixture(scope="module")
def hello() -> Path:
    return guest_path("hello")


@pytest.fixture(scope="module")
def listing(tmp_path_factory) -> Path:
    return patched_guest("hello", tmp_path_factory.mktemp("pv")).with_suffix(".diff")


def test_patch_json_file_is_the_report_beside_the_human_table(hello, tmp_path):
    out = tmp_path / "hello.pv.elf"
    done = pvtool("patch", hello, "-o", out, "--json", tmp_path / "copy.json")
    assert done.status == 0, done.output
    assert "placement" in done.stdout  # the table people read
    assert json.loads((tmp_path / "copy.json").read_text()) == \
        json.loads(out.with_suffix(".json").read_text())


def test_patch_json_dash_puts_only_the_report_on_stdout(hello, tmp_path):
    out = tmp_path / "hello.pv.elf"
    done = pvtool("patch", hello, "-o", out, "--json", "-")
    assert done.status == 0, done.output
    assert json.loads(done.stdout) == json.loads(out.with_suffix(".json").read_text())


def test_diffstat_json_file_and_dash_hold_the_same_figures(listing, tmp_path):
    to_file = pvtool("diffstat", listing, "--json", tmp_path / "port.json")
    to_stdout = pvtool("diffstat", listing, "--json", "-")
    assert to_file.status == to_stdout.status == 0
    assert "lines modified or added" in to_file.stdout
    assert json.loads(to_stdout.stdout) == json.loads((tmp_path / "port.json").read_text())


def test_diffstat_dash_reads_the_diff_from_standard_input(listing):
    from_file = json.loads(pvtool("diffstat", listing, "--json", "-").stdout)
    done = pvtool("diffstat", "-", "--json", "-", input=listing.read_bytes())
    assert done.status == 0, done.output
    from_stdin = json.loads(done.stdout)
    assert from_stdin["input"] == {"kind": "listing diff", "source": "-"}
    assert {**from_stdin, "input": None} == {**from_file, "input": None}


def test_run_json_dash_is_refused_stdout_is_the_guests(hello):
    done = pvtool("run", "--native", "--json", "-", hello)
    assert done.status == EX_USAGE
    assert "serial" in done.error_line()
    assert done.stdout == ""


def test_run_json_replaces_an_existing_file_whole(hello, tmp_path):
    summary = tmp_path / "run.json"
    summary.write_text("old")
    done = pvtool("run", "--native", "--quiet", "--json", summary, hello)
    assert done.status == 0
    assert json.loads(summary.read_text())["stop"]["kind"] == "guest-exit"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary left


def test_run_json_into_a_pipe_is_written_through(hello):
    done = pvtool("run", "--native", "--quiet", "--json", "/dev/stdout", hello,
                  process=True)
    assert done.status == 0
    guest, _, summary = done.stdout.partition("{")
    assert guest.endswith("all 13 checks passed\n")
    assert json.loads("{" + summary)["mode"] == "native"
