"""`pvtool bench` on a 64-bit guest: nanobench64 natively on the x86_64 PC beside
qemu-system-x86_64, and a row for every other mode, measured or saying why not (one
line of the JSON's error, the table's note), never a failed bench."""

from pathlib import Path

import pytest

from pvtool.bench import workloads
from pvtool.bench.goals import GOAL1_OPERATIONS
from pvtool.bench.harness import planned_steps, qemu_widths
from pvtool.bench.qemu import QEMU64
from pvtool.bench.workloads import ModeRuns, available_modes
from pvtool.machine.stop import Stop, StopKind
from pvtool.run import Mode, RunResult
from tests.e2e.test_nanobench import OPERATIONS
from tests.oracles import guest_path, require_tool


@pytest.fixture(scope="module")
def nanobench64_report(bench_report):
    return bench_report("nanobench64")


def test_a_64_bit_guest_is_benched_natively_with_nanobenchs_operations(nanobench64_report):
    data, _, _ = nanobench64_report
    (guest,) = data["guests"]
    assert (guest["name"], guest["bits"]) == ("nanobench64", 64)
    native = guest["modes"]["native"]
    assert native["ok"] and native["guest_passed"], native
    assert native["ratio_to_native"] == 1.0
    assert native["exits"]["exception"] == 256  # the page-fault benchmark's faults
    assert set(guest["operations"]) == OPERATIONS
    for name, row in guest["operations"].items():
        assert row["native"]["cycles_per_op"] > 0, name
        assert row["native"]["n"] == (512 if name == "ctxswitch" else 256)


def test_every_other_mode_is_a_row_measured_or_saying_why_not(nanobench64_report):
    """PV (patched with xen64) and trap-and-emulate run the 64-bit guest once the
    hypervisor's 64-bit paths boot it; until then the row carries the refusal."""
    data, stdout, _ = nanobench64_report
    (guest,) = data["guests"]
    assert set(guest["modes"]) == {m.value for m in available_modes()}
    for mode, run in guest["modes"].items():
        if run["ok"]:
            assert run["ratio_to_native"] > 0, mode
            assert all(row[mode] is not None for row in guest["operations"].values()), mode
        else:
            assert run["error"] and "\n" not in run["error"], mode
            assert f"nanobench64 {mode} not run:" in " ".join(stdout.split())
    # a 64-bit guest's PV runs are priced in the 64-bit null hypercall, one a run
    pv = guest["modes"]["pv"]
    if pv["ok"]:
        assert pv["prepare_seconds"] > 0 and len(pv["null_hypercall_cycles"]) == 1


def test_the_patched_guest_runs_under_pv_with_its_operations_priced(nanobench64_report):
    """The xen64 port of nanobench64 runs to its end under PV: every operation has its
    cycles, each context and CR3 switch is an mmuext_op (NEW_BASEPTR and
    NEW_USER_BASEPTR), each system call comes back by HYPERVISOR_iret."""
    data, _, _ = nanobench64_report
    (guest,) = data["guests"]
    pv = guest["modes"]["pv"]
    assert pv["ok"] and pv["guest_passed"], pv["error"]
    for name, row in guest["operations"].items():
        assert row["pv"]["cycles_per_op"] > 0 and row["pv"]["null_hypercalls"] > 0, name
    assert pv["hypercalls"]["mmuext_op"] >= 256 + 512
    assert pv["hypercalls"]["iret"] >= 256


def test_goal_1s_64_bit_rows_are_the_64_bit_runs_figures(nanobench64_report):
    """Each goal-1 operation's row for the 64-bit width is nanobench64's: its PV cost in
    64-bit null hypercalls, beside the exits it takes under PV; the 32-bit rows say
    no 32-bit guest was benched. Goal 2 has the 64-bit path's row too."""
    data, stdout, _ = nanobench64_report
    (guest,) = data["guests"]
    goal1 = [row for row in data["goals"] if row["goal"] == 1]
    wide = [row for row in goal1 if row["bits"] == 64]
    assert [row["name"] for row in wide] == [f"{op} under PV" for op in GOAL1_OPERATIONS]
    for row, op in zip(wide, GOAL1_OPERATIONS, strict=True):
        assert row["guest"] == "nanobench64"
        assert row["ratio"] == guest["operations"][op]["pv"]["null_hypercalls"] > 0
        pv_exits = guest["operation_exits"]["operations"][op]["pv"]
        assert row["exits_per_op"] == pv_exits["exits_per_op"] >= 1
        # one mmuext_op each: an invlpg, or the kernel's and the user's new base
        # pointers in one call
        assert pv_exits["hypercall_exits"] == {"mmuext_op": 1.0}, op
    assert all(row["guest"] is None and row["ratio"] is None
               for row in goal1 if row["bits"] == 32)
    (goal2,) = [row for row in data["goals"] if row["goal"] == 2 and row["bits"] == 64]
    assert goal2["ratio"] == data["limits"]["hypercall64_over_empty_hook64"]
    table = stdout[stdout.index("Issue 17's goals"):]
    assert "nanobench64" in table and " 64-bit " in table


def test_qemu_system_x86_64_judges_the_64_bit_guest(nanobench64_report):
    require_tool(QEMU64)
    data, stdout, _ = nanobench64_report
    assert data["qemu64"]["program"] == QEMU64 and data["qemu64"]["available"]
    assert data["qemu"]["program"] == "qemu-system-i386"
    assert "pvtool native vs qemu-system-i386/x86_64 -kernel" in stdout
    (guest,) = data["guests"]
    # nanobench prints its cycles, which differ from run to run: no ratio, and why
    assert guest["qemu"]["ok"] is False
    assert "QEMU printed other bytes than pvtool" in guest["qemu"]["error"]


def test_the_patchers_row_is_the_xen64_port(nanobench64_report):
    data, _, _ = nanobench64_report
    (row,) = data["patcher"]
    assert row["ok"], row["error"]
    assert row["sites"] > 0 and row["table2"]["lines"] > 0


def test_the_plan_counts_one_more_qemu_check_for_a_64_bit_guest():
    narrow, wide = guest_path("hello"), guest_path("nanobench64")
    assert qemu_widths([narrow]) == [32]
    assert qemu_widths([wide]) == qemu_widths([narrow, wide]) == [32, 64]
    assert planned_steps([wide], 1, ()) == planned_steps([narrow], 1, ()) + 1


def test_a_run_that_never_finishes_is_a_mode_not_run_with_its_reason(monkeypatch,
                                                                     tmp_path: Path):
    """The run's limit, not the guest, ended it: the mode gets the reason and no
    figures, and its later repeats are skipped."""
    stop = Stop(StopKind.TIMEOUT, "ran past --timeout 120 s", 0x1000)
    monkeypatch.setattr(workloads, "_run_once", lambda *_: RunResult(Mode.NATIVE, stop,
                                                                     120.0, 120, 10**8))
    runs = ModeRuns(Mode.NATIVE, tmp_path / "guest.elf", bits=64)
    workloads._run_and_record(runs, tmp_path)
    assert runs.error == "did not finish: ran past --timeout 120 s"
    assert not runs.ok and runs.results == [] and runs.to_dict(None) == {
        "ok": False, "error": runs.error}


def test_a_pv_run_is_priced_in_the_null_hypercall_of_its_width(monkeypatch, tmp_path):
    """Around a 64-bit guest's PV run, the 64-bit null-hypercall kernel runs (its
    hypercalls take the 64-bit path: bench/tinyxen64.py), before and after."""
    widths = []
    monkeypatch.setattr(workloads, "_null_cycles", lambda _, bits: widths.append(bits) or 10.0)
    stop = Stop(StopKind.GUEST_EXIT, "guest exit code 0", 0x1000, code=0)
    monkeypatch.setattr(workloads, "_run_once", lambda *_: RunResult(Mode.PV, stop, 1.0, 1, 1))
    runs = ModeRuns(Mode.PV, tmp_path / "guest.pv.elf", bits=64)
    workloads._run_and_record(runs, tmp_path)
    assert runs.ok and widths == [64, 64] and runs.null_cycles == [10.0]
