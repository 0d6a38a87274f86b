"""xenhello, a kernel written for Xen's 32-bit PV ABI (PAE), booted under pvtool's
hypervisor: its exact output, the same on every run, and exit status 0."""

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
