"""xenhello, a kernel written for Xen's 32-bit PV ABI (PAE), booted under pvtool's
hypervisor: its exact output, the same on every run, and exit status 0. Its xenstore
lines come from requests it streams through its store ring to the in-process daemon
(hv/xenstore/): reads of the toolstack's nodes, errors by name, a watch firing at once
and on a write, and a transaction seen only by itself until it commits."""

from functools import partial

import pytest

from tests import cli
from tests.oracles import guest_path

EXPECTED = (
    b"xenhello: xen-3.0-x86_32p, 32768 pages\n"
    b"xen_version: 4.19\n"
    b"cpuid: XenVMMXenVMM, leaves to 0x40000002, version agrees\n"
    b"shared_info: mapped (0), upcall mask 1\n"
    b"trap: int3 taken and returned with HYPERVISOR_iret (1)\n"
    b"events: VIRQ_TIMER bound (0) to port 3\n"
    b"timer: 1 event through the callback, on time\n"
    b"xenhello: hello from the console ring\n"
    b"xenstore: domid 1, name xenhello\n"
    b"xenstore: wrote data/greeting, read back hello\n"
    b"xenstore: reading /vm: error EACCES, reading data/none: error ENOENT\n"
    b"xenstore: watch on data fired at once for data, then 1 time for data/count\n"
    b"xenstore: transaction 2 reads its write (done), outside it error ENOENT, "
    b"committed done (3 events, last data/tx)\n"
    b"xenstore: data holds greeting count tx\n"
    b"xenhello: powering off\n"
)


@pytest.fixture(scope="module")
def xenhello():
    return guest_path("xenhello")


run = partial(cli.pvtool, "run", "--quiet", process=True, timeout=120)


def test_xenhello_prints_its_checks_on_both_consoles_and_powers_off(xenhello):
    done = run(xenhello)
    assert done.status == 0, done.stderr
    assert done.stdout_bytes == EXPECTED
    assert done.stderr_bytes == b""


def test_xenhello_prints_the_same_bytes_every_time(xenhello):
    first, second = run(xenhello), run(xenhello)
    assert first.stdout_bytes == second.stdout_bytes == EXPECTED
    assert first.status == second.status == 0
