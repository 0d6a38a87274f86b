"""`pvtool bench` end to end on the small guest: every field for every mode in the
JSON, and its failures as one line and a documented status."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pvtool.bench.workloads import available_modes
from pvtool.cli import cli
from pvtool.run import Mode

MODE_FIELDS = {"ok", "error", "prepare_seconds", "wall_seconds", "ratio_to_native",
               "insns_upper_bound", "insns_exact", "insns_per_second", "exits",
               "exits_total", "hypercalls", "stop", "guest_passed", "same_exits_every_run",
               "null_hypercall_cycles"}
LIMIT_FIELDS = {"register_loop", "sieve", "sieve_error", "pvtool_native", "empty_hook",
                "null_hypercall", "hypercall_over_empty_hook", "hypercall_target",
                "hypercall_within_target", "peak_memory", "peak_memory_error"}


def assert_one_error_line(stderr: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("pvtool: error: "), stderr


@pytest.fixture(scope="module")
def hello_report(tmp_path_factory, guests):
    out = tmp_path_factory.mktemp("bench") / "out.json"
    result = CliRunner().invoke(cli, ["bench", str(guests("hello")), "--repeat", "1",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(out.read_text()), result.stdout


def test_the_json_has_every_field_for_every_mode(hello_report):
    data, _ = hello_report
    assert data["repeat"] == 1
    assert data["modes_available"] == [m.value for m in available_modes()]
    (guest,) = data["guests"]
    assert guest["name"] == "hello"
    assert guest["operations"] == {}  # no nanobench lines: no per-operation table
    assert set(guest["modes"]) == set(data["modes_available"])
    for mode, run in guest["modes"].items():
        assert set(run) == MODE_FIELDS, mode
        assert run["ok"], (mode, run["error"])
        assert isinstance(run["guest_passed"], bool)
        assert run["wall_seconds"]["median"] > 0 and len(run["wall_seconds"]["runs"]) == 1
        assert run["insns_upper_bound"] > 0
    # trap-and-emulate is another's work in progress: only these two must pass here
    assert guest["modes"]["native"]["guest_passed"] and guest["modes"]["pv"]["guest_passed"]
    assert guest["modes"]["native"]["ratio_to_native"] == 1.0
    assert guest["modes"]["pv"]["prepare_seconds"] > 0  # patched on the fly
    assert guest["modes"]["pv"]["hypercalls"]  # it really ran under the hypervisor
    # a null hypercall is timed around each PV run, in cycles, and only there
    (cycles,) = guest["modes"]["pv"]["null_hypercall_cycles"]
    assert cycles > 0
    assert guest["modes"]["native"]["null_hypercall_cycles"] == []


def test_the_json_has_every_limit(hello_report):
    data, _ = hello_report
    limits = data["limits"]
    assert set(limits) == LIMIT_FIELDS
    assert limits["sieve"] is None and "no symbol" in limits["sieve_error"]
    assert limits["register_loop"]["final_ecx"] == 0
    assert limits["empty_hook"]["final_ecx"] == 0
    call = limits["null_hypercall"]
    assert call["counted_calls"] == call["calls"] and call["seconds_per_call"] > 0
    assert len(call["cycles"]) == len(call["seconds"]["runs"])
    assert call["cycles_per_call"] > 0
    assert limits["hypercall_over_empty_hook"] > 0
    memory = limits["peak_memory"]
    assert memory["isolated"] and memory["peak_kib"] >= memory["baseline_kib"] > 0


def test_the_tables_go_to_stdout(hello_report):
    _, stdout = hello_report
    for title in ("Guest workloads", "Exits by kind", "Limits, measured in this run"):
        assert title in stdout
    assert "Per-operation cost" not in stdout


def test_trap_mode_is_benched_exactly_when_pvtool_has_it():
    assert (Mode.TRAP in available_modes()) if hasattr(Mode, "TRAP") else (
        [m.value for m in available_modes()] == ["native", "pv"])


def test_a_missing_image_is_status_66_and_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pvtool", "bench",
                           str(tmp_path / "absent.elf")], capture_output=True, text=True)
    assert done.returncode == 66, done.stderr
    assert_one_error_line(done.stderr)
    assert done.stdout == ""


def test_a_file_that_is_not_elf_is_status_65(tmp_path):
    junk = tmp_path / "junk.elf"
    junk.write_bytes(b"not an elf")
    result = CliRunner().invoke(cli, ["bench", str(junk)])
    assert result.exit_code == 65
    assert_one_error_line(result.stderr)


def test_plot_without_matplotlib_is_status_69_before_measuring(tmp_path, monkeypatch,
                                                              guests):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now fails
    result = CliRunner().invoke(cli, ["bench", str(guests("hello")), "--plot",
                                      str(tmp_path / "chart.png")])
    assert result.exit_code == 69
    assert_one_error_line(result.stderr)
    assert "pvtool[plot]" in result.stderr
    assert result.stdout == ""
