"""xenhello, a kernel written for Xen's 32-bit PV ABI (PAE), booted under pvtool's
hypervisor: its exact output, the same on every run, and exit status 0. Its xenstore
lines come from requests it streams through its store ring to the in-process daemon
(hv/xenstore/): reads of the toolstack's nodes, errors by name, a watch firing at once
and on a write, and a transaction seen only by itself until it commits."""

import re
from functools import partial

import pytest

from tests import cli
from tests.oracles import guest_path

# console_io: Xen's own console (stderr, or --xen-console FILE)
XEN_CONSOLE = (
    b"xenhello: xen-3.0-x86_32p, 32768 pages\n"
    b"xen_version: 4.19\n"
    b"cpuid: XenVMMXenVMM, leaves to 0x40000002, version agrees\n"
    b"shared_info: mapped (0), upcall mask 1\n"
    b"trap: int3 taken and returned with HYPERVISOR_iret (1)\n"
    b"events: VIRQ_TIMER bound (0) to port 3\n"
    b"timer: 1 event through the callback, on time\n"
    b"time: wall clock 1066521600 s + 0 ns (version 2)\n"
    b"time: rdtsc says 10000010 ns of system time; a 10 ms sleep woke 10 ns after its "
    b"deadline, within the slop\n"
    b"xenstore: domid 1, name xenhello\n"
    b"xenstore: wrote data/greeting, read back hello\n"
    b"xenstore: reading /vm: error EACCES, reading data/none: error ENOENT\n"
    b"xenstore: watch on data fired at once for data, then 1 time for data/count\n"
    b"xenstore: transaction 2 reads its write (done), outside it error ENOENT, "
    b"committed done (3 events, last data/tx)\n"
    b"xenstore: data holds greeting count tx\n"
    b"xenhello: powering off\n"
)
# the console ring: the domain's console (stdout, as `xl console` shows it)
RING = b"xenhello: hello from the console ring\n"
RTC_START = 1066521600  # 2003-10-19 00:00 UTC, where native mode's RTC starts
TIME_LINE = re.compile(rb"time: rdtsc says (\d+) ns of system time; a 10 ms sleep woke "
                       rb"(\d+) ns after its deadline")
TIMER_SLOP_NS = 50_000  # Xen's default timer_slop (xen/common/timer.c)


@pytest.fixture(scope="module")
def xenhello():
    return guest_path("xenhello")


run = partial(cli.pvtool, "run", "--quiet", process=True, timeout=120)


def test_xenhello_prints_each_console_on_its_own_stream_and_powers_off(xenhello):
    """console_io on stderr, the ring on stdout: no line twice, none lost."""
    done = run(xenhello)
    assert done.status == 0, done.stderr
    assert done.stdout_bytes == RING
    assert done.stderr_bytes == XEN_CONSOLE


def test_xen_console_goes_to_the_file_named(xenhello, tmp_path):
    done = run("--xen-console", tmp_path / "xen.log", xenhello)
    assert done.status == 0, done.stderr
    assert (done.stdout_bytes, done.stderr_bytes) == (RING, b"")
    assert (tmp_path / "xen.log").read_bytes() == XEN_CONSOLE


def test_xenhello_prints_the_same_bytes_every_time(xenhello):
    """Time included: its rdtsc-derived system time is the same in two runs."""
    first, second = run(xenhello), run(xenhello)
    assert first.stderr_bytes == second.stderr_bytes == XEN_CONSOLE
    assert first.stdout_bytes == second.stdout_bytes == RING
    assert first.status == second.status == 0


def test_system_time_from_rdtsc_agrees_with_the_timer_and_the_wall_clock(xenhello):
    """A 10 ms set_timer_op sleep, timed with rdtsc through vcpu_info.time as Xen's
    pvclock readers do, wakes no sooner than asked and within Xen's timer slop; the
    wall clock in shared_info is the RTC's start, version even (complete)."""
    done = run(xenhello)
    start, late = map(int, TIME_LINE.search(done.stderr_bytes).groups())
    assert start > 0
    assert 0 <= late < TIMER_SLOP_NS
    assert f"wall clock {RTC_START} s + 0 ns (version 2)".encode() in done.stderr_bytes


def test_with_the_hosts_tsc_system_time_is_not_reproducible(xenhello):
    """--host-tsc: rdtsc reads the host's counter, which the hypervisor's time fields
    do not describe (benchmarks only): the sleep is timed on the wrong clock."""
    done = run("--host-tsc", xenhello)
    assert done.status == 0, done.stderr
    assert b"off time" in done.stderr_bytes
