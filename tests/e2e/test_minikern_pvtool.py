"""minikern under pvtool, natively and paravirtualized, judged by QEMU: the same bytes,
the same exit status and the same disk contents (issue: "native mode at QEMU fidelity"
and "paravirtualize minikern automatically").

QEMU runs once per module on its own blank disk; each pvtool mode runs on a blank disk
of its own, so the three disks must end byte-identical.
"""

import json
from functools import partial
from pathlib import Path

import pytest

from tests import cli
from tests.binutils import symbols as nm_symbols
from tests.e2e.test_minikern_qemu import (
    DISK_LINE,
    DISK_SIZE,
    boot_record,
    expected_output,
    record_with_count,
)
from tests.oracles import guest_path, run_qemu

pvtool = partial(cli.pvtool, process=True, timeout=120)


def blank_disk(path: Path) -> Path:
    path.write_bytes(bytes(DISK_SIZE))
    return path


@pytest.fixture(scope="module")
def qemu_run(tmp_path_factory):
    disk = blank_disk(tmp_path_factory.mktemp("qemu") / "disk.img")
    result = run_qemu(guest_path("minikern"), disk=disk)
    assert result.guest_code == 0, result.stdout
    return result, disk.read_bytes()


@pytest.fixture(scope="module")
def patched(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("patched") / "minikern.pv.elf"
    done = pvtool("patch", str(guest_path("minikern")), "-o", str(out), "--json", "-")
    assert done.status == 0, done.stderr
    return out


def test_native_run_equals_qemu(tmp_path, qemu_run):
    qemu, qemu_disk = qemu_run
    disk = blank_disk(tmp_path / "disk.img")
    done = pvtool("run", "--native", "--quiet", "--disk", str(disk),
                  str(guest_path("minikern")))
    assert done.stdout_bytes == qemu.stdout
    assert done.status == qemu.guest_code == 0
    assert disk.read_bytes() == qemu_disk


def test_paravirtualized_run_equals_qemu(tmp_path, qemu_run, patched):
    qemu, qemu_disk = qemu_run
    disk = blank_disk(tmp_path / "disk.img")
    done = pvtool("run", "--quiet", "--disk", str(disk), str(patched))
    assert done.stdout_bytes == qemu.stdout
    assert done.status == 0
    assert disk.read_bytes() == qemu_disk


def test_the_boot_counter_advances_once_per_run_and_not_with_snapshot(tmp_path, patched):
    disk = blank_disk(tmp_path / "disk.img")
    native = str(guest_path("minikern"))
    runs = [("--native", native), ("--pv", str(patched)), ("--native", native)]
    for count, (mode, image) in enumerate(runs, start=1):
        done = pvtool("run", mode, "--quiet", "--disk", str(disk), image)
        assert done.stdout_bytes == expected_output(DISK_LINE % count)
        assert boot_record(disk) == record_with_count(count)
    before = disk.read_bytes()
    done = pvtool("run", "--pv", "--quiet", "--snapshot", "--disk", str(disk), str(patched))
    assert done.stdout_bytes == expected_output(DISK_LINE % 4)  # the guest saw its write...
    assert disk.read_bytes() == before  # ...which never reached the file


def test_two_runs_print_the_same_bytes(tmp_path, patched):
    outputs = []
    for attempt in range(2):
        disk = blank_disk(tmp_path / f"disk{attempt}.img")
        outputs.append(pvtool("run", "--quiet", "--disk", str(disk), str(patched)).stdout_bytes)
    assert outputs[0] == outputs[1] == expected_output(DISK_LINE % 1)


def test_the_patched_kernel_paravirtualizes_its_user_programs_untouched(patched):
    """Every privileged or sensitive site is rewritten, kept for a stated reason, or a
    recorded trap site; the report says which, and the ring-3 programs have none."""
    report = json.loads(patched.with_suffix(".json").read_text())
    placements = report["placements"]
    assert sum(placements.values()) == len(report["sites"])
    assert placements["trap"] <= 3
    assert report["verified"]
    symbols = nm_symbols(guest_path("minikern"))  # nm, an oracle independent of pvtool
    user_text = range(symbols["ustart"], symbols["uend"])
    assert len(user_text) > 0
    assert not [s for s in report["sites"] if int(s["address"], 16) in user_text]
    user_bytes = _bytes_at(guest_path("minikern"), user_text)
    assert len(user_bytes) > 1000
    assert _bytes_at(patched, user_text) == user_bytes


def test_a_disk_whose_size_is_not_whole_sectors_is_refused(tmp_path):
    disk = tmp_path / "odd.img"
    disk.write_bytes(bytes(1000))
    done = pvtool("run", "--native", "--disk", str(disk), str(guest_path("minikern")))
    assert done.status == 65
    assert done.stderr.count("\n") == 1 and b"pvtool: error:" in done.stderr_bytes
    assert b"1000" in done.stderr_bytes


def _bytes_at(elf: Path, addresses: range) -> bytes:
    """The file-backed bytes of ADDRESSES, segment by segment (readelf's view)."""
    from pvtool.image.elf import load_elf

    image = load_elf(elf)
    out = b""
    for seg in sorted(image.segments, key=lambda s: s.vaddr):
        start = max(seg.vaddr, addresses.start)
        end = min(seg.vaddr + seg.filesz, addresses.stop)
        if start < end:
            out += image.read_virtual(start, end - start)
    return out
