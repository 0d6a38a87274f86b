"""minikern64 under `pvtool run --trap`: the unpatched 64-bit kernel at CPL 3, its
privileged instructions emulated (hv/trapmode64.py). It prints what qemu-system-x86_64
prints (tests/e2e/test_minikern64_qemu.py) but for the lines of its self-tests of the
instructions that do not trap at CPL 3 and so cannot be emulated: popfq leaves IF
alone, sgdt, sidt, str and smsw show the hypervisor's registers, and CS and SS show
RPL 3. The processes run in ring 3 beside the kernel, and the intruder still cannot
write kernel memory (user mode's page tables, hv/userview64.py). Each of those holes
is in the sensitive-instruction report with the times it ran."""

import json
from collections import Counter
from functools import partial

import pytest

from tests import cli
from tests.e2e.test_minikern64_qemu import (
    DISK_LINE,
    DISK_SIZE,
    NO_DISK_LINE,
    boot_record,
    expected_output,
    record_with_count,
)
from tests.oracles import guest_path

pvtool = partial(cli.pvtool, "run", "--trap", "--quiet")

# The self-tests that fail deprivileged, and why (DESIGN.md: the holes stay open).
HOLES = (
    b"selftest: popf restores IF, set and clear",  # popfq ignores IF at CPL 3
    b"selftest: sgdt returns what lgdt loaded",  # the hypervisor's GDTR
    b"selftest: sidt returns what lidt loaded",  # the hypervisor's IDTR
    b"selftest: str returns the tss selector ltr loaded",  # the hypervisor's TR
    b"selftest: smsw returns cr0's low bits",  # the real CR0, not the kernel's
    b"selftest: cs and ss read as the kernel's selectors, rpl 0",  # RPL 3
)
# The failed checks: smsw's line and the selectors' line make two each.
FAILED_CHECKS = 10


def trap_output(disk_line: bytes) -> bytes:
    out = expected_output(disk_line)
    for line in HOLES:
        assert line + b" ok\n" in out
        out = out.replace(line + b" ok\n", line + b" FAIL\n")
    return out.replace(b"minikern64: all 32 checks passed\n",
                       b"minikern64: %d of 32 checks FAILED\n" % FAILED_CHECKS)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    where = tmp_path_factory.mktemp("minikern64-trap")
    summary = where / "run.json"
    result = pvtool("--json", summary, guest_path("minikern64"))
    return result, json.loads(summary.read_text())


def test_it_prints_natives_bytes_but_for_the_holes(run):
    result, _ = run
    assert result.stdout_bytes == trap_output(NO_DISK_LINE)
    assert result.status == 1  # the failed self-tests


def test_the_sensitive_report_counts_each_hole(run):
    """Every untrapped sensitive instruction, by class: each self-test's once (popfq
    twice), and pushfq wherever the kernel saves its flags (pushcli)."""
    _, summary = run
    counts = Counter()
    for use in summary["sensitive"]:
        counts[use["class"]] += use["count"]
    pushf = counts.pop("pushf")
    assert counts == {"popf": 2, "sgdt": 1, "sidt": 1, "str": 1, "sldt": 1, "smsw": 1,
                      "mov_from_sreg": 2}
    assert pushf > 1000  # every pushcli of the run, never trapped


def test_system_calls_and_emulations_are_counted(run):
    """chatty's 420 system calls and the others' reach LSTAR by the syscall hook;
    the kernel's stores into its page tables are validated (ptwr)."""
    _, summary = run
    exits = summary["exits"]
    assert exits["syscall"] >= 420
    assert exits["emulated"] > exits["syscall"]  # every swapgs, sysretq, cli, sti...
    assert exits["ptwr"] > 0


def test_the_disk_counts_boots_under_trap(tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(DISK_SIZE))
    result = pvtool("--disk", disk, guest_path("minikern64"))
    assert result.stdout_bytes == trap_output(DISK_LINE % 1)
    assert boot_record(disk) == record_with_count(1)
