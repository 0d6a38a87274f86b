"""Xen test guests through `pvtool run` (the CLI, in a subprocess) and through
pvtool.run.run_image: how a domain's end becomes an exit status, one line on stderr,
and the summary."""

import json
from functools import partial

import pytest

from pvtool.machine.stop import StopKind
from pvtool.run import Mode, RunOptions, run_image
from tests import cli

GUEST_FAULT_STATUS = 71  # README, "Exit status": the domain crashed

HELLO = r"""
    mov ebx, CONSOLEIO_write
    mov ecx, msg_end - msg
    mov edx, offset msg
    HYPERCALL console_io
    mov ebx, SCHEDOP_yield
    HYPERCALL sched_op
    mov ebx, CONSOLEIO_write
    mov ecx, msg_end - msg
    mov edx, offset msg
    HYPERCALL console_io
"""
HELLO_DATA = 'msg: .ascii "xen says hi\\n"\nmsg_end:'

pvtool = partial(cli.pvtool, installed=True, timeout=60)  # the command a user types


@pytest.mark.parametrize("reason", [0, 1], ids=["poweroff", "reboot"])
def test_a_guest_that_shuts_down_cleanly_exits_0_with_its_console_io_on_stderr(build, reason):
    """console_io is Xen's console: stderr, where a Xen host's serial line shows it;
    stdout is the domain's console ring, which this guest leaves empty."""
    guest = build(HELLO + f"    SHUTDOWN {reason}\n", data=HELLO_DATA)
    done = pvtool("run", "--quiet", str(guest.path))
    assert done.status == 0, done.stderr
    assert done.stdout_bytes == b""
    assert done.stderr_bytes == b"xen says hi\nxen says hi\n"


def test_a_guest_that_shuts_down_with_crash_exits_71_with_one_line(build, tmp_path):
    guest = build(HELLO + "    SHUTDOWN SHUTDOWN_crash\n", data=HELLO_DATA)
    done = pvtool("run", "--quiet", "--xen-console", tmp_path / "xen.log", str(guest.path))
    assert done.status == GUEST_FAULT_STATUS
    assert (tmp_path / "xen.log").read_bytes() == b"xen says hi\nxen says hi\n"
    assert len(done.stderr.splitlines()) == 1
    assert "crash" in done.stderr


IRET_TO_RING_0 = r"""
    mov ebx, offset trap_table
    HYPERCALL set_trap_table
    int3
"""
IRET_TO_RING_0_HANDLER = r"""
bp_handler:
    mov dword ptr [esp + 4], 0xe018   /* Xen's ring-0 selectors are not the guest's */
    HYPERVISOR_IRET
"""
IRET_TO_RING_0_DATA = r"""
trap_table:
    TRAP 3, 3, bp_handler
    .long 0, 0
"""


def test_hypervisor_iret_to_ring_0_crashes_the_domain_exit_71_and_one_line(build):
    guest = build(IRET_TO_RING_0, handlers=IRET_TO_RING_0_HANDLER, data=IRET_TO_RING_0_DATA)
    done = pvtool("run", "--quiet", str(guest.path))
    assert done.status == GUEST_FAULT_STATUS
    assert done.stdout_bytes == b""
    (line,) = done.stderr.splitlines()
    assert line.startswith("pvtool: error:")
    assert "iret" in line and "ring 0" in line
    # With the summary, the error is still a single line of its own.
    done = pvtool("run", str(guest.path))
    assert done.status == GUEST_FAULT_STATUS
    assert [x for x in done.stderr.splitlines() if x.startswith("pvtool: error:")] == [line]


def test_the_json_summary_lists_the_hypercalls_the_guest_made(build, tmp_path):
    guest = build(HELLO, data=HELLO_DATA)
    done = pvtool("run", "--json", tmp_path / "run.json", str(guest.path))
    assert done.status == 0, done.stderr
    assert done.stderr_bytes.startswith(b"xen says hi\nxen says hi\n")
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["mode"] == "pv"
    assert summary["stop"]["kind"] == "shutdown"
    assert summary["stop"]["guest_code"] == 0
    assert summary["hypercalls"] == {"console_io": 2, "sched_op": 2}
    assert summary["exits"]["hypercall"] == 4


def test_a_guest_without_xen_notes_is_refused_with_status_69(build):
    done = pvtool("run", str(build("", notes=()).path))
    assert done.status == 69
    assert done.stdout_bytes == b""
    (line,) = done.stderr.splitlines()
    assert "Xen" in line


FAULT_AFTER_A_LONG_LOOP = r"""
    mov ebx, offset trap_table
    HYPERCALL set_trap_table
    mov ecx, 1500000      /* 3 M instructions: past the run loop's first slice */
spin:
    dec ecx
    jnz spin
    mov eax, [0x40000000]
after_fault:
    mov ebx, CONSOLEIO_write
    mov ecx, 4
    mov edx, offset vector_seen
    HYPERCALL console_io
"""
FAULT_HANDLERS = r"""
pf_handler:
    mov dword ptr [vector_seen], 14
    add esp, 4
    mov dword ptr [esp], offset after_fault
    HYPERVISOR_IRET
df_handler:
    mov dword ptr [vector_seen], 8
    add esp, 4
    mov dword ptr [esp], offset after_fault
    HYPERVISOR_IRET
"""
FAULT_DATA = r"""
trap_table:
    TRAP 8, 0, df_handler
    TRAP 14, 0, pf_handler
    .long 0, 0
vector_seen: .long 0
"""


def test_a_page_fault_after_a_slice_boundary_is_still_a_page_fault(build):
    guest = build(FAULT_AFTER_A_LONG_LOOP, handlers=FAULT_HANDLERS, data=FAULT_DATA)
    output = bytearray()
    result = run_image(guest.path, RunOptions(mode=Mode.PV, ram_size=16 << 20,
                                              max_insns=20_000_000), output.extend)
    assert result.slices > 1
    assert result.stop.kind is StopKind.SHUTDOWN
    assert bytes(output) == (14).to_bytes(4, "little")


def test_a_guest_that_blocks_with_nothing_to_wake_it_ends_with_status_79(build):
    """SCHEDOP_block with no event source left can never return (docs/ABI.md): the
    run ends, with README's status for a guest that halted for good."""
    guest = build(r"""
    mov ebx, 1            /* SCHEDOP_block */
    xor ecx, ecx
    HYPERCALL sched_op
    mov ebx, CONSOLEIO_write
    mov ecx, 5
    mov edx, offset woke
    HYPERCALL console_io
""", data='woke: .ascii "woke!"')
    done = pvtool("run", "--quiet", "--max-insns", "1000000", str(guest.path))
    assert done.status == 79
    assert done.stdout_bytes == b""
    assert len(done.stderr.splitlines()) == 1
