"""Two vCPUs time-sliced on one CPU: a guest in xenguest.py's style (tests/hv/
smpguest.py) brings vCPU 1 up with VCPUOP_initialise and up, plays IPI ping-pong,
arms a timer per vCPU and takes vCPU 1 down; its output is the same every run."""

import pytest

from pvtool.machine.stop import StopKind
from pvtool.run import Mode, RunOptions, _run_loop, run_image
from tests.cli import pvtool
from tests.hv.harness import boot
from tests.hv.smpguest import (
    BLOCKED_BSS,
    BLOCKED_DATA,
    BLOCKED_HANDLERS,
    BLOCKED_TEXT,
    EXPECTED_OUTPUT,
    SMP_BSS,
    SMP_DATA,
    SMP_HANDLERS,
    SMP_TEXT,
)
from tests.hv.xenguest import EINVAL, neg
from tests.oracles import guest_path

EEXIST = 17
EX_USAGE = 64
BLOCKED, RUNSTATE_OFFLINE = 2, 3


@pytest.fixture(scope="module")
def smp_guest(build):
    return build(SMP_TEXT, handlers=SMP_HANDLERS, data=SMP_DATA, bss=SMP_BSS)


def run_two_vcpus(guest, max_insns: int = 50_000_000):
    booted = boot(guest, vcpus=2)
    result = _run_loop(booted.machine, Mode.PV, RunOptions(max_insns=max_insns),
                       booted.domain.scheduler)
    return booted, result


def test_two_vcpus_play_ipi_ping_pong_and_take_their_own_timers(smp_guest):
    booted, result = run_two_vcpus(smp_guest)
    assert result.stop.reason == "shutdown (poweroff)", result.stop
    assert bytes(booted.output) == EXPECTED_OUTPUT


def test_vcpu1_comes_up_only_once_initialised_and_starts_as_its_context_says(smp_guest):
    booted, _ = run_two_vcpus(smp_guest)
    assert booted.u32("is_up_before") == 0
    assert booted.u32("up_uninitialised") == neg(EINVAL)  # VCPUOP_up before initialise
    assert booted.u32("init_result") == 0
    assert booted.u32("init_again") == neg(EEXIST)
    assert booted.u32("up_result") == 0 and booted.u32("is_up_after") == 1
    assert booted.u32("vcpu1_esp") == booted.guest["stack1_top"]
    assert booted.u32("sshot_result") == 0
    assert booted.u32("pings") == 3 and booted.u32("pongs") == 3
    assert booted.u32("timer0_fired") == 1 and booted.u32("timer1_fired") == 1


def test_a_vcpu_taken_down_never_runs_again_and_reads_offline(smp_guest):
    booted, _ = run_two_vcpus(smp_guest)
    assert booted.u32("ran_after_down") == 0
    assert booted.u32("runstate_result") == 0
    assert booted.u32("runstate1") == RUNSTATE_OFFLINE
    vcpu1 = booted.domain.vcpus[1]
    assert not vcpu1.up and vcpu1.runstate.state == RUNSTATE_OFFLINE


def two_runs(path) -> list[tuple]:
    """What a two-vCPU PV run of PATH shows, twice: its bytes, stop, slices,
    instructions and counts (a 32- or 64-bit guest)."""
    runs = []
    for _ in range(2):
        output = bytearray()
        result = run_image(path, RunOptions(mode=Mode.PV, vcpus=2), output.extend)
        runs.append((bytes(output), result.stop.reason, result.slices,
                     result.insns_upper_bound, dict(result.exits), dict(result.hypercalls)))
    return runs


def test_the_two_vcpu_run_is_the_same_twice(smp_guest):
    runs = two_runs(smp_guest.path)
    assert runs[0] == runs[1]
    assert runs[0][0] == EXPECTED_OUTPUT
    # vCPU 0: is_up, up, initialise twice, up, is_up, is_up (vCPU 1 is down by the
    # time vCPU 0's later timer fires), get_runstate_info; vCPU 1: its timer, down.
    assert runs[0][5]["vcpu_op"] == 10
    # 0->1 for each ping and 1->0 for each pong (6), 0->1 when both wait for their
    # timers (vCPU 1's fires first), 1->0 when vCPU 1 goes down.
    assert runs[0][4]["vcpu-switch"] == 8


# -- the command line ------------------------------------------------------------------
def test_pvtool_run_vcpus_2_runs_both_and_the_trace_names_the_vcpu(smp_guest, tmp_path):
    xen_console = tmp_path / "xen-console.txt"
    done = pvtool("run", "--vcpus", "2", "--trace", "--quiet", "--xen-console", xen_console,
                  smp_guest.path)
    assert done.status == 0, done.output
    assert xen_console.read_bytes() == EXPECTED_OUTPUT
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith(("vcpu0: ", "vcpu1: ")) for line in lines), lines
    assert "vcpu1: first run (VCPUOP_initialise's context)" in done.stderr
    assert "vcpu0: scheduled at 0x" in done.stderr
    assert any(line.startswith("vcpu1: hypercall vcpu_op(0x2, 0x1") for line in lines)


def test_with_one_vcpu_the_trace_has_no_vcpu_names_and_vcpu_1_is_enoent(smp_guest, tmp_path):
    done = pvtool("run", "--trace", "--quiet", "--max-insns", "2000000", "--xen-console",
                  tmp_path / "xen.txt", smp_guest.path)
    assert "hypercall vcpu_op(0x3, 0x1, 0x0" in done.stderr
    assert "-ENOENT" in done.stderr
    assert not any(line.startswith("vcpu0: ") for line in done.stderr.splitlines())


@pytest.mark.parametrize("count", ["0", "33", "-1"])
def test_vcpus_beyond_shared_infos_32_slots_is_one_usage_error(smp_guest, count):
    done = pvtool("run", "--vcpus", count, smp_guest.path)
    assert done.status == EX_USAGE
    assert f"--vcpus {count}: a PV domain has 1 to 32 vCPUs" in done.error_line()


@pytest.mark.parametrize("mode", ["--native", "--trap"])
def test_vcpus_for_the_bare_pc_or_trap_mode_is_one_usage_error(mode):
    done = pvtool("run", mode, "--vcpus", "2", guest_path("hello"))
    assert done.status == EX_USAGE
    assert "only a PV domain has more than one vCPU" in done.error_line()


def test_vcpus_not_a_number_is_clicks_usage_error(smp_guest):
    done = pvtool("run", "--vcpus", "two", smp_guest.path)
    assert done.status == EX_USAGE
    assert "'two' is not a valid integer" in done.error_line()


def test_the_run_stops_when_every_vcpu_is_blocked_for_ever(build):
    guest = build(BLOCKED_TEXT, handlers=BLOCKED_HANDLERS, data=BLOCKED_DATA, bss=BLOCKED_BSS)
    booted, result = run_two_vcpus(guest)
    assert result.stop.kind is StopKind.HALTED
    assert result.stop.reason == "every vCPU is blocked and nothing can wake them"
    assert (booted.u32("wakes0"), booted.u32("wakes1")) == (1, 1)
    assert [v.runstate.state for v in booted.domain.vcpus] == [BLOCKED, BLOCKED]
