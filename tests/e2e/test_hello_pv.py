"""hello patched with `pvtool patch` and booted paravirtualized under pvtool's
hypervisor: it must print QEMU's bytes (DESIGN.md: QEMU is the judge), the same bytes
as its native run, and exit 0, having gone through the hypercalls its checks need."""

import json
from functools import partial

import pytest

from tests import cli
from tests.oracles import guest_path, run_qemu

# XEN-ABI.md, "Hypercall numbers": the names a summary may list.
XEN_HYPERCALLS = {
    "set_trap_table", "mmu_update", "set_gdt", "stack_switch", "set_callbacks",
    "fpu_taskswitch", "sched_op_compat", "platform_op", "set_debugreg", "get_debugreg",
    "update_descriptor", "memory_op", "multicall", "update_va_mapping", "set_timer_op",
    "event_channel_op_compat", "xen_version", "console_io", "physdev_op_compat",
    "grant_table_op", "vm_assist", "update_va_mapping_otherdomain", "iret", "vcpu_op",
    "set_segment_base", "mmuext_op", "nmi_op", "sched_op", "callback_op",
    "event_channel_op", "physdev_op",
}
# What hello's checks make a PV kernel ask for: its lgdt (set_gdt), lidt
# (set_trap_table), the iret of its int3 handler (iret), its cr3 load (mmuext_op
# NEW_BASEPTR) and its UART and debug-exit port I/O (physdev_op set_iopl).
HELLO_NEEDS = {"set_gdt", "set_trap_table", "iret", "mmuext_op", "physdev_op"}


pvtool = partial(cli.pvtool, process=True, timeout=120)


@pytest.fixture(scope="module")
def hello():
    return guest_path("hello")


@pytest.fixture(scope="module")
def hello_pv(hello, tmp_path_factory):
    out = tmp_path_factory.mktemp("hello-pv") / "hello.pv.elf"
    done = pvtool("patch", str(hello), "-o", str(out))
    assert done.status == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def judge(hello):
    return run_qemu(hello, timeout=30)


def test_paravirtualized_hello_prints_qemus_bytes_and_exits_0(hello_pv, judge):
    done = pvtool("run", "--quiet", str(hello_pv))
    assert judge.guest_code == 0
    assert done.stdout_bytes == judge.stdout
    assert done.status == 0, done.stderr
    assert done.stderr_bytes == b""


def test_paravirtualized_hello_prints_the_same_bytes_as_its_native_run(hello, hello_pv):
    native = pvtool("run", "--native", "--quiet", str(hello))
    pv = pvtool("run", "--quiet", str(hello_pv))
    assert native.status == pv.status == 0
    assert pv.stdout_bytes == native.stdout_bytes
    assert pv.stdout_bytes.endswith(b"all 13 checks passed\n")


def test_the_json_summary_lists_the_hypercalls_hello_made(hello_pv, judge, tmp_path):
    done = pvtool("run", "--json", tmp_path / "run.json", str(hello_pv))
    assert done.status == 0
    assert done.stdout_bytes == judge.stdout  # the summary goes to stderr only
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["mode"] == "pv"
    assert summary["stop"]["kind"] == "guest-exit"
    assert summary["stop"]["guest_code"] == 0
    hypercalls = summary["hypercalls"]
    assert set(hypercalls) >= HELLO_NEEDS
    assert set(hypercalls) <= XEN_HYPERCALLS
    assert all(count > 0 for count in hypercalls.values())
    # Each hypercall is one int 0x82, except the entries of a multicall.
    made = summary["exits"]["hypercall"]
    assert made == sum(hypercalls.values()) or (
        "multicall" in hypercalls and made < sum(hypercalls.values()))


@pytest.mark.parametrize("flags", [(), ("--pv",)], ids=["auto", "pv"])
def test_hello_without_xen_notes_cannot_run_paravirtualized(hello, flags):
    done = pvtool("run", *flags, str(hello))
    assert done.status == 69
    assert done.stdout_bytes == b""
    (line,) = done.stderr.splitlines()
    assert "Xen" in line and str(hello) in line
