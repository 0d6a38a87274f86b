"""Issue 17's goal 5: the exits each nanobench operation takes in each mode, by the
difference of two real runs of the operation alone (bench/opexits.py). The counts
asserted are what nanobench's loops do: a port write is one exit to the device model
in every mode; a page-table store under PV and under trap-and-emulate goes through the
same validation (ptwr), natively through none."""

import re
import subprocess
from collections import Counter
from types import SimpleNamespace

import pytest

from pvtool.bench.opexits import (
    COUNT,
    extra_exits,
    operation_exits,
    operation_exits_table,
    per_operation,
)
from pvtool.machine.profile import ExitRecord
from pvtool.patch.pipeline import patch_image
from pvtool.run import Mode, RunOptions, run_image
from tests.oracles import QEMU, QEMU_ARGS, require_tool

OPERATIONS = ["syscall", "cli_sti", "pte_update", "cr3_switch", "port_write",
              "page_fault", "ctxswitch"]


def lines(output: bytes) -> dict[str, bytes]:
    return {line.split()[1].decode(): line for line in output.splitlines()
            if line.startswith(b"nanobench: ") and b" n=" in line}


def without_cycles(output: bytes) -> bytes:
    return re.sub(rb"cycles=\d+", b"cycles=", output)


def test_nanobench_runs_each_operation_as_often_as_its_command_line_asks(guests):
    output = bytearray()
    result = run_image(guests("nanobench"),
                       RunOptions(mode=Mode.NATIVE, cmdline=b"n=0 pte_update=7 ctxswitch=3"),
                       output.extend)
    assert result.stop.code == 0
    counts = {op: line.split(b" n=")[1].split()[0] for op, line in lines(bytes(output)).items()}
    assert counts == {"syscall": b"0", "cli_sti": b"0", "pte_update": b"7", "cr3_switch": b"0",
                      "port_write": b"0", "page_fault": b"0", "ctxswitch": b"6"}


def test_qemu_takes_the_same_command_line_and_runs_the_same_counts(guests):
    """The same lines on QEMU but for their cycles, the host's time there."""
    require_tool(QEMU)
    cmdline = "n=2 cli_sti=5 junk=x n5=1 page_fault=1000001"  # bad words are ignored
    done = subprocess.run([QEMU, "-kernel", str(guests("nanobench")), "-append", cmdline,
                           *QEMU_ARGS], capture_output=True, timeout=120, check=False)
    output = bytearray()
    run_image(guests("nanobench"), RunOptions(mode=Mode.NATIVE, cmdline=cmdline.encode()),
              output.extend)
    assert without_cycles(done.stdout) == without_cycles(bytes(output))
    assert b"nanobench: cli_sti n=5 " in done.stdout
    assert b"nanobench: page_fault n=2 " in done.stdout


@pytest.fixture(scope="module")
def per_mode(guests, tmp_path_factory):
    """Every operation's exits in every mode, from real runs."""
    patched = tmp_path_factory.mktemp("opexits") / "nanobench.pv.elf"
    patch_image(guests("nanobench"), patched)
    images = {Mode.NATIVE: guests("nanobench"), Mode.TRAP: guests("nanobench"),
              Mode.PV: patched}
    return {mode: operation_exits(mode, image, OPERATIONS) for mode, image in images.items()}


def test_every_operation_is_measured_in_every_mode_in_whole_exits(per_mode):
    for mode, figures in per_mode.items():
        assert figures["error"] is None, (mode, figures["error"])
        assert figures["count"] == COUNT
        assert list(figures["operations"]) == OPERATIONS
        for name, figure in figures["operations"].items():
            # the difference of the n printed: COUNT more (a ctxswitch round is 2 switches)
            assert figure["n"] == (2 * COUNT if name == "ctxswitch" else COUNT)
            # deterministic runs: the difference is exact, so each loop's exits are whole
            for kind, per_op in figure["exits"].items():
                assert per_op == int(per_op) and per_op > 0, (mode, name, kind)
                assert figure["host_us"][kind] > 0, (mode, name, kind)
            assert figure["exits_per_op"] == sum(figure["exits"].values())
            assert figure["host_us_per_op"] == pytest.approx(sum(figure["host_us"].values()),
                                                            abs=0.01)


def test_the_exits_are_what_nanobenchs_loops_do(per_mode):
    native, trap, pv = (per_mode[m]["operations"] for m in (Mode.NATIVE, Mode.TRAP, Mode.PV))
    for ops in (native, trap, pv):
        assert ops["port_write"]["exits"] == {"io": 1.0}  # outb 0x80: the device model's
        assert ops["page_fault"]["exits"]["exception"] == 1.0
        assert ops["syscall"]["exits"]["interrupt"] == 1.0  # int 0x80 from ring 3
    # natively nothing but the fault, the interrupt and the port exits to Python
    for name in ("cli_sti", "pte_update", "cr3_switch", "ctxswitch"):
        assert native[name]["exits"] == {}, name
    # trap-and-emulate: cli and sti each fault; mov cr3 faults once a switch
    assert trap["cli_sti"]["exits"] == {"emulated": 2.0}
    assert trap["cr3_switch"]["exits"] == {"emulated": 1.0}
    assert trap["ctxswitch"]["exits"] == {"emulated": 1.0}
    # PV: cli and sti are vcpu_info's mask, no exit; the syscall returns by HYPERVISOR_iret
    assert pv["cli_sti"]["exits"] == {}
    assert pv["syscall"]["hypercalls"] == {"iret": 1.0}
    # goal 1's operations take at least an exit each under PV (N iterations, N exits)
    for name in ("pte_update", "cr3_switch", "ctxswitch"):
        assert pv[name]["exits_per_op"] >= 1, name
    # PV's hypercall exits by hypercall: the invlpg of a PTE update, the new base
    # pointer of a switch; their host time is the hypercall kind's
    assert pv["pte_update"]["hypercall_exits"] == {"mmuext_op": 1.0}
    assert pv["cr3_switch"]["hypercall_exits"] == {"mmuext_op": 1.0}
    assert pv["syscall"]["hypercall_exits"] == {"iret": 1.0}
    for name, figure in pv.items():
        assert sum(figure["hypercall_exits"].values()) == figure["exits"].get("hypercall", 0)
        assert sum(figure["hypercall_host_us"].values()) == pytest.approx(
            figure["host_us"].get("hypercall", 0), abs=0.01), name
    assert trap["pte_update"]["hypercall_exits"] == {}  # no hypercall in trap mode


def test_a_page_table_store_is_validated_alike_under_trap_and_pv(per_mode):
    """The same validation in both (issue 17's goal 5): nanobench's store into its live
    page table is a ptwr exit, one a store, under trap-and-emulate; under PV the
    patched store is validated too (by ptwr or a hypercall), never written unchecked."""
    trap = per_mode[Mode.TRAP]["operations"]["pte_update"]
    pv = per_mode[Mode.PV]["operations"]["pte_update"]
    assert trap["exits"]["ptwr"] == 1.0
    assert pv["exits"].get("ptwr", 0) + pv["exits"].get("hypercall", 0) >= 1


def runs(records: list[tuple], hypercalls: dict | None = None) -> SimpleNamespace:
    """A profiled run as opexits reads it, from its exits' records."""
    exit_records = [ExitRecord(*record) for record in records]
    return SimpleNamespace(records=exit_records, exits=Counter(r.kind for r in exit_records),
                           hypercalls=Counter(hypercalls or {}))


BOOT = [("hypercall", "mmuext_op", 80_000), ("io", None, 1_000)]  # a pin: costly
LOOP = [("ptwr", None, 20_000), ("hypercall", "mmuext_op", 9_000)]
END = [("io", None, 2_000)]


def test_an_operations_host_time_is_the_longer_runs_extra_exits_own():
    """By hand: the two runs part where the shorter stops looping; the longer one's
    next two iterations are the operations' own, timed one by one."""
    short = runs(BOOT + LOOP * 2 + END, {"mmuext_op": 3})
    long_loop = LOOP * 2 + [("ptwr", None, 30_000), ("hypercall", "mmuext_op", 11_000),
                            ("ptwr", None, 40_000), ("hypercall", "mmuext_op", 13_000)]
    long = runs(BOOT + long_loop + END, {"mmuext_op": 5})
    assert extra_exits(short, long) == [ExitRecord(*r) for r in long_loop[4:]]
    figure = per_operation(short, long, 2)
    assert figure["exits"] == {"hypercall": 1.0, "ptwr": 1.0}
    assert figure["host_us"] == {"hypercall": 12.0, "ptwr": 35.0}  # (11 + 13) / 2, (30 + 40) / 2
    assert figure["host_us_per_op"] == 47.0
    # the mean of the operation's own mmuext_ops, not the boot's pin among them
    assert figure["hypercall_exits"] == {"mmuext_op": 1.0}
    assert figure["hypercall_host_us"] == {"mmuext_op": 12.0}
    assert figure["hypercalls"] == {"mmuext_op": 1.0}


def test_the_rdtsc_check_is_the_operations_cycles_over_the_tsc_rate():
    pte = {"n": 100, "exits": {"ptwr": 1.0}}
    costs = {"pte_update": {"pv": {"cycles_per_op": 65_000.0}}}
    table = operation_exits_table({Mode.PV: {"method": "m", "count": 100, "error": None,
                                             "operations": {"pte_update": pte}}},
                                  costs, 2.6e9)
    assert table["operations"]["pte_update"]["pv"]["rdtsc_us_per_op"] == 25.0


def test_a_guest_without_the_counts_is_not_measured_and_says_why(guests):
    figures = operation_exits(Mode.NATIVE, guests("hello"), ["pte_update"])
    assert figures["operations"] == {}
    assert figures["error"] == (f"the guest ran no more pte_update when asked "
                                f"pte_update={2 * COUNT} than {COUNT}")


def test_the_table_is_per_operation_then_per_mode_with_each_modes_error():
    pte = {"n": 100, "exits": {"ptwr": 1.0}}
    table = operation_exits_table({
        Mode.NATIVE: None,  # printed no nanobench line
        Mode.TRAP: {"method": "m", "count": 100, "error": None,
                    "operations": {"pte_update": pte}},
        Mode.PV: {"method": "m", "count": 100, "error": "why", "operations": {}}})
    assert table == {"method": "m", "count": 100, "errors": {"pv": "why"},
                     "operations": {"pte_update": {"trap": pte | {"rdtsc_us_per_op": None},
                                                   "pv": None}}}
    assert operation_exits_table({Mode.NATIVE: None}) == {}


def test_nanobench64_takes_the_same_counts_and_is_measured_alike(guests):
    """The 64-bit guest's ring-3 loop gets its count in a register: asked for none, it
    makes no system call; asked for COUNT more, COUNT more."""
    figures = operation_exits(Mode.NATIVE, guests("nanobench64"), ["syscall", "port_write"])
    assert figures["error"] is None, figures["error"]
    syscall, port_write = figures["operations"]["syscall"], figures["operations"]["port_write"]
    assert syscall["n"] == port_write["n"] == COUNT
    assert port_write["exits"] == {"io": 1.0}
    assert syscall["exits"] == {}  # natively syscall and sysretq count no exit (fast_entry.py)
