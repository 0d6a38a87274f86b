"""`pvtool bench` end to end on the small guest: every field for every mode in the
JSON, and its failures as one line and a documented status."""

import json
import re
import sys
from types import SimpleNamespace

import pytest

from pvtool.bench import command
from pvtool.bench.harness import planned_steps
from pvtool.bench.workloads import available_modes
from pvtool.run import Mode
from tests.cli import pvtool
from tests.oracles import QEMU, QEMU_ARGS, guest_path, require_tool
from tests.patch.tools import objdump

MODE_FIELDS = {"ok", "error", "prepare_seconds", "wall_seconds", "ratio_to_native",
               "insns_upper_bound", "insns_exact", "insns_per_second", "exits",
               "exits_total", "hypercalls", "stop", "guest_passed", "same_exits_every_run",
               "null_hypercall_cycles", "profile"}
DISK_SECTORS = 2  # the disk rows' workload here: small, the fields are what is checked
DISK_FIELDS = {"name", "mode", "driver", "sectors_per_request", "image", "sectors",
               "sectors_moved", "ok", "error", "line", "passed", "disk_written",
               "wall_seconds", "sectors_per_second", "sectors_per_second_whole_run", "runs",
               "exits_per_sector", "io_exits_per_sector", "hypercalls_per_sector",
               "same_counts_every_run"}
LIMIT_FIELDS = {"register_loop", "sieve", "sieve_error", "pvtool_native", "empty_hook",
                "null_hypercall", "hypercall_over_empty_hook", "hypercall_target",
                "hypercall_floor", "floor_over_empty_hook",
                "hypercall_within_target", "peak_memory", "peak_memory_error",
                "empty_hook64", "null_hypercall64", "hypercall64_over_empty_hook64",
                "hypercall64_within_target"}


@pytest.fixture(scope="module")
def hello_report(bench_report):
    return bench_report("hello", disk_sectors=DISK_SECTORS)


def test_the_json_has_every_field_for_every_mode(hello_report):
    data, _, _ = hello_report
    assert data["repeat"] == 1
    assert data["modes_available"] == [m.value for m in available_modes()]
    (guest,) = data["guests"]
    assert guest["name"] == "hello"
    assert guest["operations"] == {}  # no nanobench lines: no per-operation table
    assert guest["operation_exits"] == {}  # nor exits per operation
    assert {row["goal"] for row in data["goals"]} == {1, 2, 3}
    assert set(guest["modes"]) == set(data["modes_available"])
    for mode, run in guest["modes"].items():
        assert set(run) == MODE_FIELDS, mode
        assert run["ok"], (mode, run["error"])
        assert isinstance(run["guest_passed"], bool)
        assert run["wall_seconds"]["median"] > 0 and len(run["wall_seconds"]["runs"]) == 1
        assert run["insns_upper_bound"] > 0
        # the exits table's times: one more run, profiled, whose exits are hello's own
        profiled = {row["kind"]: row["count"] for row in run["profile"]["kinds"] if row["exit"]}
        assert profiled == run["exits"], mode
        assert run["profile"]["emulator_share"] + run["profile"]["python_share"] \
            == pytest.approx(1)
    # trap-and-emulate is another's work in progress: only these two must pass here
    assert guest["modes"]["native"]["guest_passed"] and guest["modes"]["pv"]["guest_passed"]
    assert guest["modes"]["native"]["ratio_to_native"] == 1.0
    assert guest["modes"]["pv"]["prepare_seconds"] > 0  # patched on the fly
    assert guest["modes"]["pv"]["hypercalls"]  # it really ran under the hypervisor
    # a null hypercall is timed around each PV run, in cycles, and only there
    (cycles,) = guest["modes"]["pv"]["null_hypercall_cycles"]
    assert cycles > 0
    assert guest["modes"]["native"]["null_hypercall_cycles"] == []


def test_the_disk_rows_are_each_way_with_every_field(hello_report):
    data, stdout, _ = hello_report
    disk = data["disk"]
    assert (disk["sectors"], disk["sectors_moved"]) == (DISK_SECTORS, 2 * DISK_SECTORS)
    ways = [(r["name"], r["mode"], r["driver"], r["sectors_per_request"])
            for r in disk["rows"]]
    assert ways == [("native", "native", "ATA", 1), ("trap", "trap", "ATA", 1),
                    ("pv auto", "pv", "ATA", 1), ("pv hand", "pv", "blkfront", 1),
                    ("pv hand", "pv", "blkfront", 8)]
    for row in disk["rows"]:
        assert row["ok"], row["error"]
        assert set(row) == DISK_FIELDS
    assert set(disk["blkfront"]) == {"fewest_ata_exits_per_sector", "times_fewer_exits",
                                     "target", "met"}
    assert "Disk I/O: read 2 sectors" in stdout


def test_a_sectors_costs_are_the_workload_run_less_the_idle_run(hello_report):
    """Per sector moved (read and written): the workload run's counts less those of the
    same kernel with diskbench=0, both kept in the JSON."""
    data, _, _ = hello_report
    for row in data["disk"]["rows"]:
        work, idle = row["runs"]["workload"], row["runs"]["idle"]
        moved = row["sectors_moved"]
        for run in (work, idle):
            assert run["exits_total"] == sum(run["exits"].values())
            assert run["hypercalls_total"] == sum(run["hypercalls"].values())
        assert row["exits_per_sector"] == round(
            (work["exits_total"] - idle["exits_total"]) / moved, 3)
        assert row["io_exits_per_sector"] == round(
            (work["exits"].get("io", 0) - idle["exits"].get("io", 0)) / moved, 3)
        assert row["hypercalls_per_sector"] == round(
            (work["hypercalls_total"] - idle["hypercalls_total"]) / moved, 3)
        fastest = {kind: row["wall_seconds"][kind]["min"] for kind in ("workload", "idle")}
        spent = fastest["workload"] - fastest["idle"]
        # the JSON's times are rounded to the microsecond, the rates made from the exact ones
        assert row["sectors_per_second"] == (
            pytest.approx(moved / spent, rel=1e-3, abs=0.1) if spent > 0 else None)
        assert row["sectors_per_second_whole_run"] == pytest.approx(
            moved / fastest["workload"], rel=1e-3, abs=0.1)


def test_every_way_moves_the_sectors_and_ata_pays_its_port_exits(hello_report):
    """Each way's line says ok and its disk holds the pattern. ATA by PIO is at least
    136 port exits to read a sector and 137 to write one (ide.c: 7 register accesses, a
    status read and 128 insl or outsl dwords, each one exit: SPLIT-DRIVERS.md §7.4);
    blkfront does no port I/O."""
    data, _, _ = hello_report
    for row in data["disk"]["rows"]:
        assert row["passed"] and row["disk_written"], row["line"]
        if row["driver"] == "ATA":
            assert row["io_exits_per_sector"] >= (136 + 137) / 2
        else:
            assert row["runs"]["workload"]["exits"].get("io", 0) == 0


def test_the_json_has_every_limit(hello_report):
    data, _, _ = hello_report
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
    # the 64-bit path's: the hypercall page's syscall, against an empty SYSCALL hook
    assert limits["empty_hook64"]["final_ecx"] == 0
    call64 = limits["null_hypercall64"]
    assert call64["counted_calls"] == call64["calls"] and call64["cycles_per_call"] > 0
    assert limits["hypercall64_over_empty_hook64"] == round(
        call64["seconds_per_call"] / limits["empty_hook64"]["seconds_per_call"], 3)
    assert limits["hypercall64_within_target"] == (
        limits["hypercall64_over_empty_hook64"] <= limits["hypercall_target"])
    # the host's TSC in Hz, from the 32-bit null hypercalls' cycles and seconds
    assert call["tsc_hz"] == pytest.approx(call["cycles_per_call"] / call["seconds_per_call"],
                                           rel=1e-6)  # cycles_per_call is rounded
    memory = limits["peak_memory"]
    assert memory["isolated"] and memory["peak_kib"] >= memory["baseline_kib"] > 0


def test_the_tables_go_to_stdout(hello_report):
    _, stdout, _ = hello_report
    for title in ("Guest workloads", "pvtool native vs qemu-system-i386 -kernel",
                  "Exits by kind", "Limits, measured in this run"):
        assert title in stdout
    assert "Per-operation cost" not in stdout


def test_the_patcher_row_is_in_the_json_and_the_table(hello_report):
    data, stdout, _ = hello_report
    (row,) = data["patcher"]
    assert row["ok"] and row["image"].endswith("hello.elf")
    # gcc's guests keep no data in .text: objdump's linear listing is every instruction
    assert row["instructions"] == len(objdump(guest_path("hello")))
    assert row["seconds"] > 0 and row["peak_kib"] >= row["baseline_kib"] > 0
    assert "The patcher: pvtool patch" in stdout
    assert row["table2"]["lines"] > 0 and row["table2"]["baseline_lines"] == row["instructions"]
    assert "Xen's hand port of Linux: 2,995 lines, 1.36%" in " ".join(stdout.split())


def test_the_json_has_hello_beside_qemu(hello_report):
    require_tool(QEMU)
    data, _, _ = hello_report
    qemu = data["qemu"]
    assert qemu["available"] and qemu["error"] is None and qemu["args"] == list(QEMU_ARGS)
    (guest,) = data["guests"]
    row = guest["qemu"]
    assert row["ok"], row["error"]
    assert len(row["wall_seconds"]["runs"]) == len(row["startup_seconds"]["runs"]) == 1
    assert row["guest_code"] == guest["modes"]["native"]["stop"]["guest_code"] == 0
    assert row["pvtool_seconds"] == guest["modes"]["native"]["wall_seconds"]["median"]
    assert row["pvtool_over_qemu"] == pytest.approx(
        row["pvtool_seconds"] / row["wall_seconds"]["median"], rel=1e-3)


def test_trap_mode_is_benched_exactly_when_pvtool_has_it():
    assert (Mode.TRAP in available_modes()) if hasattr(Mode, "TRAP") else (
        [m.value for m in available_modes()] == ["native", "pv"])


def test_a_missing_image_is_status_66_and_one_line(tmp_path):
    done = pvtool("bench", tmp_path / "absent.elf", process=True)
    assert done.status == 66, done.stderr
    done.error_line()
    assert done.stdout == ""


def test_a_file_that_is_not_elf_is_status_65(tmp_path):
    junk = tmp_path / "junk.elf"
    junk.write_bytes(b"not an elf")
    result = pvtool("bench", junk)
    assert result.status == 65
    result.error_line()


def test_plot_without_matplotlib_is_status_69_before_measuring(tmp_path, monkeypatch,
                                                              guests):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now fails
    result = pvtool("bench", guests("hello"), "--plot", tmp_path / "chart.png")
    assert result.status == 69
    result.error_line()
    assert "pvtool[plot]" in result.stderr
    assert result.stdout == ""


def test_progress_off_a_terminal_is_a_line_per_phase(hello_report, guests):
    _, _, stderr = hello_report
    total = planned_steps([guests("hello")], 1, (), DISK_SECTORS)
    modes = ", ".join(m.value for m in available_modes())
    lines = stderr.splitlines()
    phases = [re.sub(r"\[\d+/\d+, \d+:\d\d\] ", "", line) for line in lines[:6]]
    assert phases == ["bench: QEMU", f"bench: hello.elf: {modes}", "bench: hello.elf: QEMU",
                      f"bench: disk I/O, {DISK_SECTORS} sectors each way", "bench: limits",
                      "bench: pvtool patch (child processes)"]
    assert lines[0].startswith(f"bench: [1/{total}, ")
    # every planned step was taken or skipped: the plan and the measures agree
    assert re.fullmatch(rf"bench: done in \d+:\d\d, {total} of {total} steps", lines[6])


def test_it_says_where_it_wrote_the_json(hello_report):
    _, _, stderr = hello_report
    last = stderr.splitlines()[-1]
    assert last.startswith("bench: wrote the JSON to ") and last.endswith("out.json")


def test_a_footnote_explains_each_mode_faster_than_native(hello_report):
    data, stdout, _ = hello_report
    text = " ".join(stdout.split())
    faster = [mode for mode, run in data["guests"][0]["modes"].items()
              if run["ratio_to_native"] is not None and run["ratio_to_native"] < 1]
    for mode in data["modes_available"]:
        assert (f"{mode} faster than native on hello" in text) == (mode in faster)


def test_the_hypercall_target_is_explained(hello_report):
    data, stdout, _ = hello_report
    text = " ".join(stdout.split())
    assert "target: issue 17 asks that a null hypercall" in text
    assert "a hypercall's floor" in text  # what any hypercall must cost, beside it
    # what bench/hypercallfloor.py's hook does: machine/cpu_state.py's in-place access
    assert "CS and 6 registers read and EAX written in place" in text
    assert (f"at most {data['limits']['hypercall_target']:g}x an empty Unicorn hook on the "
            "instruction it leaves the guest by") in text
    assert "32-bit: int 0x82 against int 0x80 into an INTR hook" in text
    assert "64-bit: the hypercall page's syscall against syscall into a SYSCALL hook" in text
    for bits in (32, 64):
        assert f"{bits}-bit null hypercall" in text
    over = not (data["limits"]["hypercall_within_target"]
                and data["limits"]["hypercall64_within_target"])
    assert ("Over it:" in text) == over


@pytest.mark.parametrize(("args", "status"), [
    (("--plot", "chart.txt"), 64),  # the chart is a PNG: said before measuring
    (("--json", "missing/bench.json"), 73),  # no folder made: refused before measuring
    (("--plot", "missing/chart.png"), 73),
])
def test_a_bad_output_is_refused_before_measuring(tmp_path, monkeypatch, args, status):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(command, "bench", lambda *_: pytest.fail("measured"))
    done = pvtool("bench", *args, guest_path("hello"))
    assert done.status == status, done.output
    assert args[1] in done.error_line()
    assert list(tmp_path.iterdir()) == []


def test_json_dash_puts_only_the_figures_on_stdout(monkeypatch):
    """The one --json rule (tests/test_cli_json.py), here with the measuring left out."""
    figures = {"guests": [], "modes_available": ["native"]}
    measured = SimpleNamespace(to_dict=lambda: figures)
    monkeypatch.setattr(command, "bench", lambda *_: measured)
    done = pvtool("bench", "--json", "-", guest_path("hello"))
    assert done.status == 0, done.output
    assert json.loads(done.stdout) == figures
