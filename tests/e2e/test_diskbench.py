"""minikern's disk workload (issue 14 item 4): `diskbench=N diskreq=R` on the command line
reads N sectors from sector 2 on, writes a pattern over them, flushes and prints one line
with the FNV-1a checksum of what it read, in place of the boot counter and the programs.

Every way of running it prints the same line and leaves the same disk: QEMU (the judge),
pvtool's native PC, trap-and-emulate and the automatic PV port, whatever R is. The
checksum and the written pattern are computed here, independently of the guest.
"""

import struct
from functools import partial
from pathlib import Path

import pytest

from tests import cli
from tests.e2e.test_minikern_qemu import BOOT_OUTPUT, SECTOR
from tests.oracles import guest_path, run_qemu

pvtool = partial(cli.pvtool, process=True, timeout=240)

FIRST_SECTOR = 2      # diskbench.c: past the boot counter's record
SECTORS = 20          # at 8 per request: two whole pages and a half
DISK_SECTORS = 64
FNV_OFFSET, FNV_PRIME = 2166136261, 16777619
CHECKS = 14           # main.c's checks up to the timer's, and the workload's one


def workload_disk(path: Path) -> Path:
    """A disk whose every sector differs, so a sector read from the wrong place shows."""
    path.write_bytes(bytes((i * 7 + i // SECTOR) & 0xFF for i in range(DISK_SECTORS * SECTOR)))
    return path


def fnv1a(data: bytes) -> int:
    digest = FNV_OFFSET
    for byte in data:
        digest = ((digest ^ byte) * FNV_PRIME) & 0xFFFFFFFF
    return digest


def workload_span(disk: bytes) -> bytes:
    return disk[FIRST_SECTOR * SECTOR:(FIRST_SECTOR + SECTORS) * SECTOR]


def expected_disk(before: bytes) -> bytes:
    """Word i of every sector s the workload writes holds s * 128 + i."""
    words = SECTOR // 4
    written = b"".join(struct.pack(f"<{words}I", *range(s * words, (s + 1) * words))
                       for s in range(FIRST_SECTOR, FIRST_SECTOR + SECTORS))
    start = FIRST_SECTOR * SECTOR
    return before[:start] + written + before[start + len(written):]


def workload_line(before: bytes) -> bytes:
    return (b"diskbench: %d sectors read (fnv-1a %x), written and flushed ok\n"
            % (SECTORS, fnv1a(workload_span(before))))


def expected_output(before: bytes) -> bytes:
    return BOOT_OUTPUT + workload_line(before) + b"minikern: all %d checks passed\n" % CHECKS


def cmdline(per_request: int) -> str:
    return f"diskbench={SECTORS} diskreq={per_request}"


@pytest.fixture(scope="module")
def patched(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("patched") / "minikern.pv.elf"
    done = pvtool("patch", str(guest_path("minikern")), "-o", str(out))
    assert done.status == 0, done.stderr
    return out


@pytest.mark.parametrize("per_request", [1, 8])
def test_qemu_prints_the_workload_line_and_leaves_the_pattern(tmp_path, per_request):
    disk = workload_disk(tmp_path / "disk.img")
    before = disk.read_bytes()
    result = run_qemu(guest_path("minikern"), disk=disk,
                      extra_args=["-append", cmdline(per_request)])
    assert result.guest_code == 0, result.stdout
    assert result.stdout == expected_output(before)
    assert disk.read_bytes() == expected_disk(before)


@pytest.mark.parametrize("mode", ["--native", "--pv"])
@pytest.mark.parametrize("per_request", [1, 8])
def test_pvtool_prints_qemus_bytes_and_leaves_its_disk(tmp_path, patched, mode, per_request):
    disk = workload_disk(tmp_path / "disk.img")
    before = disk.read_bytes()
    image = guest_path("minikern") if mode == "--native" else patched
    done = pvtool("run", mode, "--quiet", "--cmdline", cmdline(per_request),
                  "--disk", str(disk), str(image))
    assert done.status == 0, done.stderr
    assert done.stdout_bytes == expected_output(before)
    assert disk.read_bytes() == expected_disk(before)


def test_trap_and_emulate_prints_the_same_workload_line(tmp_path):
    """Under --trap the self-tests report what trap-and-emulate gets wrong (popf, sgdt,
    sidt run unseen in ring 1); the workload's line and the disk are the same."""
    disk = workload_disk(tmp_path / "disk.img")
    before = disk.read_bytes()
    done = pvtool("run", "--trap", "--quiet", "--cmdline", cmdline(8), "--disk", str(disk),
                  str(guest_path("minikern")))
    assert workload_line(before) in done.stdout_bytes
    assert disk.read_bytes() == expected_disk(before)


def test_a_request_size_past_one_page_is_refused():
    done = pvtool("run", "--native", "--quiet", "--cmdline", cmdline(9),
                  str(guest_path("minikern")))
    assert done.stdout_bytes.endswith(b"panic: diskbench: diskreq must be 1 to 8\n")
    assert done.status != 0
