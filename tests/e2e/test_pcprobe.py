"""pcprobe on QEMU and on pvtool's native PC: the same serial bytes, the same exit status
and the same disks afterwards (issue 11: CPUID, unassigned memory, the HPET, ports 0x61
and 0x92, the RTC's interrupts, both IDE channels, resets). With three IDE disks the
primary master and slave and the secondary master are disks and the secondary slave is
empty; with one or none, QEMU's empty CD-ROM is the secondary master."""

from functools import partial
from pathlib import Path

import pytest

from tests import cli
from tests.oracles import guest_path, run_qemu

pvtool = partial(cli.pvtool, process=True, timeout=180)
DISKS, SECTORS = 3, 16


def make_disks(folder: Path, count: int = DISKS) -> list[Path]:
    """Disk N's sector S starts with "disk N sector S", so a read shows which it was."""
    folder.mkdir(exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"disk{index}.img"
        path.write_bytes(b"".join(f"disk {index} sector {sector}\n".encode().ljust(512, b"\0")
                                  for sector in range(SECTORS)))
        paths.append(path)
    return paths


def disk_options(paths: list[Path]) -> list[str]:
    return [option for path in paths for option in ("--disk", str(path))]


@pytest.fixture(scope="module", params=[DISKS, 1, 0], ids=lambda count: f"{count}-disks")
def qemu_run(request, tmp_path_factory):
    disks = make_disks(tmp_path_factory.mktemp("qemu"), request.param)
    result = run_qemu(guest_path("pcprobe"), disks=disks, timeout=120)
    return result, [path.read_bytes() for path in disks]


def test_pcprobe_prints_what_qemu_prints(tmp_path, qemu_run):
    qemu, qemu_disks = qemu_run
    disks = make_disks(tmp_path, len(qemu_disks))
    done = pvtool("run", "--native", "--quiet", *disk_options(disks),
                  str(guest_path("pcprobe")))
    assert done.stdout_bytes == qemu.stdout
    assert b"pcprobe: done\n" in qemu.stdout
    assert done.status == qemu.guest_code == 0
    assert [path.read_bytes() for path in disks] == qemu_disks  # sector 3 written


def test_snapshot_leaves_every_disk_alone(tmp_path, qemu_run):
    qemu, qemu_disks = qemu_run
    disks = make_disks(tmp_path, len(qemu_disks))
    before = [path.read_bytes() for path in disks]
    done = pvtool("run", "--native", "--quiet", "--snapshot", *disk_options(disks),
                  str(guest_path("pcprobe")))
    if not disks:  # with nothing to protect, --snapshot is a usage error (QEMU ignores it)
        assert done.status == 64 and "--snapshot" in done.error_line()
        return
    assert done.stdout_bytes == qemu.stdout
    assert [path.read_bytes() for path in disks] == before


@pytest.mark.parametrize("port", ["92", "cf9"])
def test_a_reset_ends_the_run_as_qemu_with_no_reboot_does(tmp_path, port):
    disks = make_disks(tmp_path)
    qemu = run_qemu(guest_path("pcprobe"), disks=disks, timeout=120,
                    extra_args=("-snapshot", "-append", f"reset={port}"))
    done = pvtool("run", "--native", "--quiet", "--snapshot", "--cmdline", f"reset={port}",
                  *disk_options(disks), str(guest_path("pcprobe")))
    assert f"reset through {port}".encode() in qemu.stdout
    assert done.stdout_bytes == qemu.stdout
    assert done.status == qemu.status == 0


def test_a_fifth_disk_is_a_usage_error(tmp_path):
    disks = make_disks(tmp_path) * 2
    done = pvtool("run", "--native", *disk_options(disks[:5]), str(guest_path("pcprobe")))
    assert done.status == 64
    assert "5 times" in done.stderr
