"""minikern64 under `pvtool run --native`, judged by qemu-system-x86_64: the same bytes
and exit status on each of two boots of one disk (the boot counter counts 1, then 2),
and the same disk afterwards; and without a disk. The 64-bit PC is the one an ELF64
kernel chooses (machine/native.py)."""

import json
from functools import partial
from pathlib import Path

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
from tests.oracles import QEMU64, guest_path, run_qemu

pvtool = partial(cli.pvtool, "run", "--native", "--quiet")


def blank_disk(path: Path) -> Path:
    path.write_bytes(bytes(DISK_SIZE))
    return path


@pytest.fixture(scope="module")
def boots(tmp_path_factory) -> list[tuple]:
    """Two boots of one blank disk each, on QEMU and on pvtool: (QEMU's result, its
    disk, pvtool's result, its disk) per boot."""
    where = tmp_path_factory.mktemp("minikern64-native")
    qemu_disk, native_disk = blank_disk(where / "qemu.img"), blank_disk(where / "native.img")
    elf = guest_path("minikern64")
    done = []
    for _ in range(2):
        qemu = run_qemu(elf, disk=qemu_disk, timeout=60, qemu=QEMU64)
        native = pvtool("--disk", native_disk, elf)
        done.append((qemu, qemu_disk.read_bytes(), native, native_disk.read_bytes()))
    return done


@pytest.mark.parametrize("boot", [0, 1])
def test_each_boot_prints_qemus_bytes_and_leaves_its_disk(boots, boot):
    qemu, qemu_disk, native, native_disk = boots[boot]
    assert native.stdout_bytes == qemu.stdout == expected_output(DISK_LINE % (boot + 1))
    assert native.status == qemu.guest_code == 0
    assert native_disk == qemu_disk


def test_the_boot_counter_is_saved_on_the_disk(boots, tmp_path):
    for boot, (_, _, _, native_disk) in enumerate(boots):
        disk = tmp_path / f"after-{boot}.img"
        disk.write_bytes(native_disk)
        assert boot_record(disk) == record_with_count(boot + 1)


def test_without_a_disk_the_count_is_1_as_on_qemu():
    elf = guest_path("minikern64")
    native = pvtool(elf)
    qemu = run_qemu(elf, timeout=60, qemu=QEMU64)
    assert native.stdout_bytes == qemu.stdout == expected_output(NO_DISK_LINE)
    assert native.status == qemu.guest_code == 0


def test_its_idle_hlt_is_seen_where_the_kernel_runs(tmp_path):
    """minikern64's hlt runs in the top 2 GiB, not where the a.out kludge loaded it:
    the run skips its idle time (machine/loader.py watches both places)."""
    summary = tmp_path / "run.json"
    assert pvtool("--json", summary, guest_path("minikern64")).status == 0
    assert json.loads(summary.read_text())["exits"]["hlt"] >= 1
