"""taskswitch on QEMU and on pvtool's bare PC: hardware task switches (ljmp, lcall and
iret, int n, #DF and the timer through IDT task gates, #TS and #GP from bad switches)
print the same bytes and end with the same exit status, and `--trace-int` logs the
same deliveries as QEMU's `-d int`."""

import re
from functools import partial

import pytest

from tests import cli
from tests.e2e.patched import patch_guest
from tests.oracles import guest_path, qemu_int_log, run_qemu

native = partial(cli.pvtool, "run", "--native", "--quiet")


@pytest.fixture(scope="module")
def taskswitch():
    return guest_path("taskswitch")


@pytest.fixture(scope="module")
def on_qemu(taskswitch):
    return run_qemu(taskswitch, timeout=60)


def test_taskswitch_passes_its_checks_on_qemu(on_qemu):
    assert on_qemu.guest_code == 0
    assert on_qemu.stdout.endswith(b"taskswitch: all 40 checks passed\n")
    # The double fault went through its task gate, from the instruction that faulted.
    assert b"double fault task: error code 0, main task at bad_ds_fault ok" in on_qemu.stdout


def test_taskswitch_prints_qemus_bytes_and_exits_as_qemu(taskswitch, on_qemu):
    done = native(taskswitch)

    assert done.stdout_bytes == on_qemu.stdout
    assert done.status == on_qemu.guest_code == 0


def test_trace_int_logs_the_deliveries_qemu_logs(taskswitch):
    expected = qemu_int_log(taskswitch)

    done = cli.pvtool("run", "--native", "--quiet", "--trace-int", taskswitch)

    assert done.stderr.splitlines() == expected
    # int 0x40 and the #TS of int 0x41, a busy ljmp's #GP, then #GP -> #NP -> #DF
    # (the #NP is never delivered), then three timer interrupts.
    assert [line.split()[1] for line in expected] == [
        "v=40", "v=41", "v=0a", "v=0d", "v=0d", "v=08", "v=20", "v=20", "v=20"]



def test_patched_taskswitch_under_pv_stops_at_its_first_task_switch(taskswitch, on_qemu,
                                                                     tmp_path):
    """Xen's PV ABI has no hardware tasks (set_gdt takes no TSS), so the patched guest
    cannot print native's bytes: it prints what comes before its first ljmp to a TSS,
    then the run stops with one line naming that switch, at its EIP in the image."""
    out = patch_guest("taskswitch", tmp_path)

    done = cli.pvtool("run", "--quiet", out, process=True, timeout=120)

    assert done.status == 71  # GuestFault: the domain crashed
    first_line = on_qemu.stdout.split(b"\n", 1)[0] + b"\n"
    assert done.stdout_bytes == first_line
    [line] = done.stderr.splitlines()
    assert re.fullmatch(r"pvtool: error: crash: domain crashed: ljmp 0x30:0 at (0x[0-9a-f]{8}) "
                        r"is a hardware task switch \(selector 0x30: a TSS\), which a PV "
                        r"domain cannot make at eip \1 <main\+0x[0-9a-f]+>", line), line
