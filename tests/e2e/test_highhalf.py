"""highhalf, a kernel that boots the way xv6 boots (linked at 0x80100000, entered with
paging off, 4 MiB pages first, then its own page tables; the APICs found through the
MP table, the 8259 pair masked, the local APIC's timer; IRQ 1, 4 and 14 through the
I/O APIC; a console on COM1 and the CGA screen fed by the keyboard; disk 1 read and
written), on QEMU and on pvtool's native machine with the same two disks, the same
serial input and the same keys: the same bytes on COM1, the same exit status, the
same 4000 bytes of text screen and the same disks afterwards.

QEMU's keys come from its monitor (`sendkey`, once the guest asks for them), its
screen from `pmemsave` while the guest waits for Escape; pvtool's keys from --keys.
"""

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from pvtool.machine.screen import TextScreen
from pvtool.machine.vga_text import COLUMNS, ROWS, TEXT_BUFFER
from pvtool.run import Mode, RunOptions, run_image
from tests import cli
from tests.oracles import QemuResult, QemuSession, guest_path

pvtool_run = partial(cli.pvtool, "run", process=True, timeout=300)
SECTOR = 512
SECTORS = 64
SCREEN_BYTES = ROWS * COLUMNS * 2
INPUT = b"##hello, highhalf\n"  # highhalf skips the leading '#' (see its serial())
LINE_KEYS = ("shift-h", "i", "spc", "4", "2", "x", "backspace", "ret")  # QEMU's names
TYPED = "Hi 42x\\b\\n\\e"  # --keys: the same line, then Escape
ASKS_FOR_LINE = b"console: type a line on the keyboard\n"
SCREEN_DONE = b"console: press escape\n"
READ_SECTORS, WRITTEN = 4, 7  # highhalf reads disk 1's sectors 0-3, writes sector 7


def disk_image(disk: int) -> bytes:
    """Sectors that each start with a line of text naming them, then differ."""
    sectors = []
    for s in range(SECTORS):
        text = f"disk {disk} sector {s}: xv6 keeps its file system here\0".encode()
        sectors.append(text + bytes((disk * 5 + s * 7 + i) & 0xFF
                                    for i in range(SECTOR - len(text))))
    return b"".join(sectors)


def write_disks(folder: Path, count: int = 2) -> list[Path]:
    paths = [folder / f"disk{disk}.img" for disk in range(count)]
    for disk, path in enumerate(paths):
        path.write_bytes(disk_image(disk))
    return paths


@dataclass(frozen=True)
class QemuRun:
    result: QemuResult
    screen: bytes  # the text screen's 4000 bytes while the guest waited for Escape
    disks: list[bytes]  # the disk files afterwards


def run_on_qemu(folder: Path, disk_count: int) -> QemuRun:
    disks = write_disks(folder, disk_count)
    with QemuSession(guest_path("highhalf"), folder, timeout=120, disks=disks,
                     input_data=INPUT) as qemu:
        qemu.wait_for(ASKS_FOR_LINE)
        qemu.send_keys(LINE_KEYS)
        qemu.wait_for(SCREEN_DONE)
        screen = qemu.read_memory(TEXT_BUFFER, SCREEN_BYTES)
        qemu.send_keys(["esc"])
        result = qemu.finish()
    return QemuRun(result, screen, [disk.read_bytes() for disk in disks])


def assert_pvtool_matches(judge: QemuRun, folder: Path, disk_count: int) -> None:
    """`pvtool run --native` with the same disks, input and keys: QEMU's serial bytes,
    exit status, screen text (--screen) and disks afterwards."""
    disks = write_disks(folder, disk_count)
    serial_input, screen_file = folder / "input", folder / "screen.txt"
    serial_input.write_bytes(INPUT)
    disk_options = [option for disk in disks for option in ("--disk", str(disk))]

    done = pvtool_run("--native", "--quiet", *disk_options, "--input", str(serial_input),
                      "--keys", TYPED, "--screen", str(screen_file),
                      str(guest_path("highhalf")))

    assert done.stdout_bytes == judge.result.stdout
    assert done.status == judge.result.guest_code
    assert screen_file.read_text(encoding="utf-8") == TextScreen(judge.screen, 0).text()
    assert [disk.read_bytes() for disk in disks] == judge.disks


@pytest.fixture(scope="module")
def judge(tmp_path_factory) -> QemuRun:
    return run_on_qemu(tmp_path_factory.mktemp("qemu"), 2)


def test_highhalf_passes_its_checks_on_qemu(judge):
    assert judge.result.guest_code == 0
    assert b"mp: I/O APIC 0 version 0x11 at 0xfec00000\n" in judge.result.stdout
    assert b"ide: disk 1 sector 3: 'disk 1 sector 3: xv6 keeps" in judge.result.stdout
    assert b"'hello, highhalf'" in judge.result.stdout
    assert b"console: read 'Hi 42' by interrupt" in judge.result.stdout
    assert judge.result.stdout.endswith(b"highhalf: all 11 checks passed\n")


def test_highhalf_writes_the_complement_of_sector_3_to_sector_7_of_disk_1(judge):
    disk0, disk1 = disk_image(0), bytearray(disk_image(1))
    last_read = disk1[(READ_SECTORS - 1) * SECTOR:READ_SECTORS * SECTOR]
    disk1[WRITTEN * SECTOR:(WRITTEN + 1) * SECTOR] = bytes(b ^ 0xFF for b in last_read)
    assert judge.disks == [disk0, bytes(disk1)]


def test_the_screen_shows_what_com1_got(judge):
    """The last lines on COM1 are on the screen too, the typed line without the
    backspaced 'x'; below them the cursor's row and the bottom row, which the console
    keeps blank by scrolling (as xv6's does)."""
    rows = TextScreen(judge.screen, 0).text().splitlines()
    assert rows[ROWS - 6:] == [
        "console: type a line on the keyboard", "Hi 42",
        "console: read 'Hi 42' by interrupt (IRQ 1 through the I/O APIC)",
        "console: press escape", "", ""]


def test_native_highhalf_prints_qemus_bytes_and_leaves_qemus_screen_and_disks(
        tmp_path, judge):
    assert_pvtool_matches(judge, tmp_path, 2)


def test_without_disk_1_native_highhalf_still_prints_qemus_bytes(tmp_path_factory):
    """xv6's probe: device 1 selected, its status polled for non-zero; here it stays 0.
    The firmware leaves device 1 selected, so a kernel that waits for it first (as
    xv6's ideinit does) would wait for ever: highhalf prints the Device register."""
    judge = run_on_qemu(tmp_path_factory.mktemp("qemu"), 1)

    assert b"ide: the firmware left the device register at 0xb0\nide: no disk 1\n" in (
        judge.result.stdout)
    assert judge.result.guest_code == 0 and judge.disks == [disk_image(0)]
    assert_pvtool_matches(judge, tmp_path_factory.mktemp("pvtool"), 1)


def test_native_highhalfs_text_screen_is_qemus_cell_for_cell(tmp_path, judge):
    output = bytearray()
    options = RunOptions(mode=Mode.NATIVE, disks=tuple(write_disks(tmp_path)),
                         input_data=INPUT, keys=TYPED)

    result = run_image(guest_path("highhalf"), options, output.extend)

    assert bytes(output) == judge.result.stdout
    assert result.screen.cells == judge.screen
