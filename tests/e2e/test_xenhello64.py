"""xenhello64, a kernel written for Xen's 64-bit PV ABI (guests/xenhello64), booted
under pvtool's hypervisor: its exact output and exit status 0. Every line is a path of
the 64-bit entry and exit (docs/ABI.md, "64-bit domains: entry and exit"): hypercalls
by `syscall` through the hypercall page, the 16-byte trap table, int3 and a #PF
bounced and returned from with HYPERVISOR_iret (CR2 in vcpu_info.arch.cr2, the error
code's U bit cleared for kernel mode), the timer's event upcall, set_segment_base,
the user L4 and HYPERVISOR_iret to ring 3, and a user program's syscalls bounced to
the kernel's syscall callback with the GS bases swapped."""

import json
from functools import partial

import pytest

from tests import cli
from tests.oracles import guest_path

# console_io: Xen's own console (stderr)
XEN_CONSOLE = (
    b"xenhello64: xen-3.0-x86_64, 32768 pages\n"
    b"xen_version: 4.19\n"
    b"shared_info: mapped (0), upcall mask 1\n"
    b"traps: int3 and page fault handlers set (0)\n"
    b"trap: int3 taken and returned with HYPERVISOR_iret (1)\n"
    b"page fault: 1 on reading an unmapped page, cr2 its address, error code 0; "
    b"mapped again, the read saw what was written before\n"
    b"events: VIRQ_TIMER bound (0) to port 3\n"
    b"timer: 1 event through the callback, on time\n"
    b"segments: kernel gs base set (0), user gs base set (0), gs:0 reads the kernel's "
    b"block\n"
    b"user: kernel stack (0), syscall callback (0) and user page tables (0) set; "
    b"entering ring 3 with HYPERVISOR_iret\n"
    b"user: hello from ring 3 through syscall\n"
    b"user: gs:0 read the user's word in ring 3, the kernel's in the callback\n"
    b"user: exit 7 through the syscall callback\n"
    b"xenhello64: powering off\n"
)
RING = b"xenhello64: hello from the console ring\n"  # the console ring, on stdout

run = partial(cli.pvtool, "run", "--quiet", process=True, timeout=120)


@pytest.fixture(scope="module")
def xenhello64():
    return guest_path("xenhello64")


def test_xenhello64_runs_every_entry_path_to_its_success_line(xenhello64):
    done = run(xenhello64)
    assert done.status == 0, done.stderr
    assert done.stdout_bytes == RING
    assert done.stderr_bytes == XEN_CONSOLE


def test_xenhello64_exits_are_counted_by_kind(xenhello64, tmp_path):
    """The user program's three syscalls (write, gsword, exit: guests/xenhello64/
    user.S) bounced to the kernel; two upcalls (the timer's, then the console
    backend's notification after the ring write); the int3 and the #PF bounced; no
    instruction emulated."""
    done = run("--json", tmp_path / "run.json", xenhello64)
    assert done.status == 0, done.stderr
    exits = json.loads((tmp_path / "run.json").read_text())["exits"]
    assert (exits["syscall"], exits["upcall"], exits["exception"], exits["interrupt"]) \
        == (3, 2, 1, 1)
    assert "emulated" not in exits
