"""minikern's disk workload (issue 14 item 4): `diskbench=N diskreq=R` on the command line
reads N sectors from sector 2 on, writes a pattern over them, flushes and prints one line
with the FNV-1a checksum of what it read, in place of the boot counter and the programs.

Every way of running it prints the same line and leaves the same disk: QEMU (the judge),
pvtool's native PC, trap-and-emulate, the automatic PV port (ATA under I/O privilege)
and the hand port (minikern-xen, blkfront), whatever R is. The checksum and the written
pattern are computed here, independently of the guest.
"""

import json
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
    path.parent.mkdir(parents=True, exist_ok=True)
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


@pytest.fixture(scope="module")
def images(patched) -> dict[str, tuple[str, Path]]:
    """Each mode's `pvtool run` flag and image: native ATA, automatic PV with ATA under
    I/O privilege, and the hand port with blkfront (minikern-xen)."""
    return {"native": ("--native", guest_path("minikern")), "auto-pv": ("--pv", patched),
            "hand-pv": ("--pv", guest_path("minikern-xen"))}


def run_workload(tmp_path: Path, images, mode: str, per_request: int):
    """Run the workload in MODE on a fresh disk: (the run, the disk before, the summary)."""
    disk = workload_disk(tmp_path / "disk.img")
    summary = tmp_path / "summary.json"
    flag, image = images[mode]
    done = pvtool("run", flag, "--quiet", "--json", str(summary), "--cmdline",
                  cmdline(per_request), "--disk", str(disk), str(image))
    assert done.status == 0, done.stderr
    return done, disk, json.loads(summary.read_text())


@pytest.mark.parametrize("mode", ["native", "auto-pv", "hand-pv"])
@pytest.mark.parametrize("per_request", [1, 8])
def test_pvtool_prints_qemus_bytes_and_leaves_its_disk(tmp_path, images, mode, per_request):
    before = workload_disk(tmp_path / "before.img").read_bytes()
    done, disk, _ = run_workload(tmp_path, images, mode, per_request)
    assert done.stdout_bytes == expected_output(before)
    assert disk.read_bytes() == expected_disk(before)


def requests(per_request: int) -> int:
    """The block requests the workload makes: reads and writes of at most per_request
    sectors each, and one flush."""
    return 2 * -(-SECTORS // per_request) + 1


def test_blkfront_sends_one_event_per_request_and_no_port_io(tmp_path, images):
    """The backend re-arms req_event and answers during the send, so every request is
    one EVTCHNOP_send and none waits: the two runs differ by their request counts."""
    one = run_workload(tmp_path / "1", images, "hand-pv", 1)[2]
    page = run_workload(tmp_path / "8", images, "hand-pv", 8)[2]
    sends = one["hypercalls"]["event_channel_op"] - page["hypercalls"]["event_channel_op"]
    assert sends == requests(1) - requests(8)
    for summary in (one, page):
        assert summary["exits"].get("io", 0) == 0
        assert summary["hypercalls"]["grant_table_op"] == 1  # setup_table, once


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
