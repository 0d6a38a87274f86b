"""minikern64 patched by `pvtool patch` and run as a 64-bit PV domain (issue 15, point 5),
judged by qemu-system-x86_64 on the unpatched kernel, as test_minikern64_native judges
`pvtool run --native`: the same bytes and exit status on each of two boots of one disk
(the boot counter counts 1, then 2), the same disk afterwards, and without a disk.

What it takes, beside the PV entry and the rewrites (docs/ABI.md, "64-bit kernels
patched by xen64"): the glue's user L4 of each process, filled with mmu_update before
it is loaded (Xen writes a frame that is no page table in use as plain memory) and
holding a view of the kernel's upper half with only its user pages, the program text
the processes run (the intruder's write to kernel memory still faults); the kernel's
own stores into its tables, emulated (writable page tables); and its kernel stack, read
from its TSS at each bounce from user mode.
"""

import json
from functools import partial
from pathlib import Path

import pytest

from tests import cli
from tests.e2e.test_minikern64_native import blank_disk
from tests.e2e.test_minikern64_qemu import (
    DISK_LINE,
    NO_DISK_LINE,
    boot_record,
    expected_output,
    record_with_count,
)
from tests.oracles import QEMU64, guest_path, run_qemu

pvtool = partial(cli.pvtool, process=True, timeout=300)


@pytest.fixture(scope="module")
def patched(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("minikern64-pv") / "minikern64.pv.elf"
    done = pvtool("patch", guest_path("minikern64"), "-o", out)
    assert done.status == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def boots(patched, tmp_path_factory) -> list[tuple]:
    """Two boots of one blank disk each, on QEMU (the unpatched kernel) and under PV
    (the patched one): (QEMU's result, its disk, pvtool's result, its disk) per boot."""
    where = tmp_path_factory.mktemp("minikern64-pv-disks")
    qemu_disk, pv_disk = blank_disk(where / "qemu.img"), blank_disk(where / "pv.img")
    done = []
    for _ in range(2):
        qemu = run_qemu(guest_path("minikern64"), disk=qemu_disk, timeout=60, qemu=QEMU64)
        pv = pvtool("run", "--quiet", "--disk", pv_disk, patched)
        done.append((qemu, qemu_disk.read_bytes(), pv, pv_disk.read_bytes()))
    return done


@pytest.mark.parametrize("boot", [0, 1])
def test_each_boot_prints_qemus_bytes_and_saves_its_count_as_qemu_does(boots, boot, tmp_path):
    qemu, qemu_disk, pv, pv_disk = boots[boot]
    assert pv.stdout_bytes == qemu.stdout == expected_output(DISK_LINE % (boot + 1)), \
        pv.stderr
    assert pv.status == qemu.guest_code == 0
    assert pv_disk == qemu_disk
    (tmp_path / "after.img").write_bytes(pv_disk)
    assert boot_record(tmp_path / "after.img") == record_with_count(boot + 1)


def test_without_a_disk_the_count_is_1_as_on_qemu(patched):
    pv = pvtool("run", "--quiet", patched)
    qemu = run_qemu(guest_path("minikern64"), timeout=60, qemu=QEMU64)
    assert pv.stdout_bytes == qemu.stdout == expected_output(NO_DISK_LINE)
    assert pv.status == qemu.guest_code == 0


def test_the_run_counts_the_exits_that_make_it_paravirtual(patched, tmp_path):
    """The processes' system calls come back by HYPERVISOR_iret, their address spaces
    are switched by mmuext_op, and the kernel's stores into its tables are emulated."""
    summary = tmp_path / "run.json"
    assert pvtool("run", "--quiet", "--json", summary, patched).status == 0
    run = json.loads(summary.read_text())
    hypercalls = run["hypercalls"]
    assert hypercalls["iret"] >= 420  # chatty's 420 system calls, each a sysretq
    assert hypercalls["mmuext_op"] >= 4  # each process's address space, at least
    assert run["exits"]["ptwr"] >= 1
