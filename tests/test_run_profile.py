"""`pvtool run --profile` on real guests in every mode: the profile accounts for
every exit the run counted and for all of the run loop's wall time, in the table on
stderr and in --json alike; without --profile there is no profile and no timing."""

import json

import pytest

from pvtool.machine import profile as profile_module
from pvtool.machine.profile import RUN_LOOP
from pvtool.run import Mode, RunOptions, run_image
from tests import cli
from tests.e2e.patched import patched_once
from tests.oracles import guest_path

HELLO_STATUS = {Mode.NATIVE: 0, Mode.TRAP: 1, Mode.PV: 0}  # trap: popf's hole, by design


def hello(mode: Mode):
    return patched_once("hello") if mode is Mode.PV else guest_path("hello")


def check_profile(profile: dict, exits: dict[str, int], wall_seconds: float) -> None:
    """Every exit kind counted as often as the run counted it; the emulator's share
    and every row's share make the whole wall time."""
    rows = {row["kind"]: row for row in profile["kinds"]}
    counted = {kind: row["count"] for kind, row in rows.items() if row["exit"]}
    assert counted == exits
    assert rows[RUN_LOOP]["exit"] is False
    assert profile["emulator_share"] + profile["python_share"] == pytest.approx(1)
    assert profile["emulator_share"] + sum(row["share"] for row in rows.values()) \
        == pytest.approx(1)
    assert profile["emulator_us"] > 0 and profile["python_us"] > 0
    assert profile["wall_us"] <= wall_seconds * 1e6
    for row in rows.values():
        assert row["total_us"] >= 0
        if row["count"]:
            assert row["mean_us"] == pytest.approx(row["total_us"] / row["count"], abs=1e-3)
    # every hypercall exit is its hypercall's (none in the other modes)
    labels = profile["labels"]
    assert all(label["kind"] == "hypercall" for label in labels)
    assert sum(label["count"] for label in labels) == exits.get("hypercall", 0)
    if labels:
        assert sum(label["total_us"] for label in labels) == pytest.approx(
            rows["hypercall"]["total_us"], abs=1e-3 * len(labels))


@pytest.mark.parametrize("mode", [Mode.NATIVE, Mode.TRAP, Mode.PV], ids=lambda m: m.value)
def test_the_profile_accounts_for_every_exit_and_all_the_time(mode):
    output = bytearray()
    result = run_image(hello(mode), RunOptions(mode=mode, profile=True), output.extend)
    assert result.stop.code == HELLO_STATUS[mode]
    exits = {str(kind): count for kind, count in result.exits.items()}
    assert exits  # hello writes the serial port in every mode
    check_profile(result.profile.to_dict(), exits, result.wall_seconds)
    assert result.to_dict()["profile"] == result.profile.to_dict()


@pytest.mark.parametrize("mode", [Mode.NATIVE, Mode.PV], ids=lambda m: m.value)
def test_without_profile_nothing_is_timed(mode, monkeypatch):
    def no_clock() -> int:
        raise AssertionError("a timing call in an unprofiled run")

    monkeypatch.setattr(profile_module, "perf_counter_ns", no_clock)
    result = run_image(hello(mode), RunOptions(mode=mode), lambda _: None)
    assert result.stop.code == 0
    assert result.profile is None
    assert "profile" not in result.to_dict()


def test_a_pv_runs_hypercall_exits_are_each_its_hypercalls_and_recorded_in_order():
    """hello makes no multicall: each hypercall is an exit of its own, so its
    hypercalls by name are its counts by name, and the records are every exit."""
    result = run_image(hello(Mode.PV), RunOptions(mode=Mode.PV, profile=True),
                       lambda _: None)
    labels = {row["name"]: row["count"] for row in result.profile.to_dict()["labels"]}
    assert labels == dict(result.hypercalls)
    records = result.profile.records()
    assert len(records) == sum(result.exits.values())
    assert [r.name for r in records if r.kind == "hypercall"].count("set_trap_table") \
        == result.hypercalls["set_trap_table"]
    assert all(r.name is None for r in records if r.kind != "hypercall")
    # each hypercall's row, by hand from the records of its exits
    for row in result.profile.to_dict()["labels"]:
        mine = [r.ns for r in records if r.name == row["name"]]
        assert row["count"] == len(mine)
        assert row["total_us"] == round(sum(mine) / 1000, 3)
        assert row["mean_us"] == round(sum(mine) / 1000 / len(mine), 3)


def test_profile_with_json_writes_the_same_counts_as_the_summary(tmp_path):
    report = tmp_path / "run.json"
    done = cli.pvtool("run", "--profile", "--json", report, hello(Mode.PV), process=True)
    assert done.status == 0, done.stderr
    data = json.loads(report.read_text())
    check_profile(data["profile"], data["exits"], data["wall_seconds"])
    stderr = done.stderr
    assert "pv run: host time by exit kind (--profile)" in stderr
    assert "emulator (guest code)" in stderr and "pvtool's Python" in stderr
    for label in data["profile"]["labels"]:  # under the hypercall row, by name
        assert f"│   {label['name']} " in stderr


def test_quiet_keeps_the_profile_it_was_asked_for():
    done = cli.pvtool("run", "--native", "--quiet", "--profile", guest_path("hello"))
    assert done.status == 0
    stderr = done.stderr
    assert "native run: host time by exit kind (--profile)" in stderr
    assert "exit kind" in stderr and "count" in stderr
    assert "slice(s)" not in stderr  # the exits summary stays quiet
