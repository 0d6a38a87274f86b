"""highhalf, a kernel shaped like xv6 (linked at 0x80100000, entered with paging off,
4 MiB pages first, then its own page tables; the local APIC's timer, IRQ 14 and IRQ 4
through the I/O APIC, the 8259 pair masked), on QEMU and on pvtool's native machine
with the same disk and the same serial input: the same bytes and the same exit."""

from functools import partial
from pathlib import Path

import pytest

from tests import cli
from tests.oracles import QemuResult, guest_path, run_qemu

pvtool_run = partial(cli.pvtool, "run", process=True, timeout=300)
SECTOR = 512
INPUT = b"##hello, highhalf\n"  # highhalf skips the leading '#' (see its serial())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    """A disk whose first sectors all differ, and the serial input."""
    folder = tmp_path_factory.mktemp("highhalf")
    disk, serial_input = folder / "disk.img", folder / "input"
    disk.write_bytes(b"".join(bytes((s * 7 + i) & 0xFF for i in range(SECTOR))
                              for s in range(64)))
    serial_input.write_bytes(INPUT)
    return disk, serial_input


@pytest.fixture(scope="module")
def judge(files) -> QemuResult:
    disk, _ = files
    return run_qemu(guest_path("highhalf"), disk=disk, input_data=INPUT, timeout=120)


def test_highhalf_passes_its_checks_on_qemu(judge):
    assert judge.guest_code == 0
    assert b"4 sectors read by interrupt" in judge.stdout
    assert b"'hello, highhalf'" in judge.stdout
    assert judge.stdout.endswith(b"highhalf: all 7 checks passed\n")


def test_native_highhalf_prints_qemus_bytes_and_exits_with_qemus_code(files, judge):
    disk, serial_input = files
    done = pvtool_run("--native", "--quiet", "--disk", str(disk), "--input",
                      str(serial_input), str(guest_path("highhalf")))

    assert done.stdout_bytes == judge.stdout
    assert done.status == judge.guest_code
