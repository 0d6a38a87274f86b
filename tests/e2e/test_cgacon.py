"""cgacon, whose console is the CGA screen and whose input is the 8042 keyboard, on
QEMU and on pvtool's native PC: the same bytes on COM1 (among them everything the
guest read from the VGA and 8042 registers at entry, and the screen the firmware left
it), the same exit status, and the same 4000 bytes of text screen at the end.

QEMU's keys come from its monitor (`sendkey`, once the guest asks for them); pvtool's
from --keys, the same keys written as text. QEMU's screen is read with `pmemsave`
while the guest waits for its last key (Escape), which changes nothing on screen.
"""

import json
from functools import partial

import pytest

from pvtool.machine.screen import TextScreen
from pvtool.machine.vga_text import (
    COLUMNS,
    ROWS,
    TEXT_BUFFER,
    TEXT_BUFFER_SIZE,
    firmware_screen,
)
from pvtool.run import Mode, RunOptions, run_image
from tests import cli
from tests.oracles import QemuSession, guest_path

pvtool_run = partial(cli.pvtool, "run", process=True, timeout=120)
SCREEN_BYTES = ROWS * COLUMNS * 2
LINE_KEYS = ("shift-h", "i", "spc", "4", "2", "ret")  # QEMU's names for "Hi 42\n"
TYPED = "Hi 42\\n\\e"  # --keys: the same line, then Escape
ASKS_FOR_LINE = b"keyboard: type a line and press enter\n"
SCREEN_DONE = b"cgacon: screen complete, press escape\n"


@pytest.fixture(scope="module")
def qemu_cgacon(tmp_path_factory):
    """QEMU's run of cgacon: how it ended, and the whole text window before Escape."""
    elf = guest_path("cgacon")
    with QemuSession(elf, tmp_path_factory.mktemp("qemu"), timeout=60) as qemu:
        qemu.wait_for(ASKS_FOR_LINE)
        qemu.send_keys(LINE_KEYS)
        qemu.wait_for(SCREEN_DONE)
        window = qemu.read_memory(TEXT_BUFFER, TEXT_BUFFER_SIZE)
        qemu.send_keys(["esc"])
        return qemu.finish(), window


def test_cgacon_prints_qemus_bytes_and_leaves_qemus_screen(tmp_path, qemu_cgacon):
    elf = guest_path("cgacon")
    judge, window = qemu_cgacon
    judge_screen = window[:SCREEN_BYTES]
    screen_file = tmp_path / "screen.txt"

    done = pvtool_run("--native", "--quiet", "--keys", TYPED, "--screen", str(screen_file),
                      str(elf))
    output = bytearray()
    result = run_image(elf, RunOptions(mode=Mode.NATIVE, keys=TYPED), output.extend)

    assert judge.guest_code == 0 and SCREEN_DONE in judge.stdout
    assert done.stdout_bytes == judge.stdout == bytes(output)
    assert done.status == judge.guest_code
    assert result.screen.cells == judge_screen
    assert screen_file.read_text(encoding="utf-8") == TextScreen(judge_screen, 0).text()


def test_the_text_window_beyond_the_screen_holds_the_firmwares_blank_cells(qemu_cgacon):
    """cgacon never writes past the first page: what QEMU's window holds there is what
    the firmware left, and pvtool must start from the same."""
    _, window = qemu_cgacon
    assert window[SCREEN_BYTES:] == firmware_screen()[SCREEN_BYTES:]


def test_the_json_summary_carries_the_screen_and_the_cursor():
    """--json /dev/stderr: a file that is not a regular one is written straight through."""
    done = pvtool_run("--native", "--quiet", "--json", "/dev/stderr", "--keys", TYPED,
                      str(guest_path("cgacon")))
    screen = json.loads(done.stderr_bytes)["screen"]

    assert done.status == 0
    # cgacon echoed the typed line on the last row, then Enter scrolled it up one.
    assert screen["rows"][ROWS - 2] == "type a line> Hi 42"
    assert screen["rows"][ROWS - 1] == ""
    assert screen["cursor"] == {"row": ROWS - 1, "column": 0}
    assert screen["rows_used"] == ROWS - 1


def test_screen_without_native_is_a_usage_error(tmp_path):
    done = cli.pvtool("run", "--screen", str(tmp_path / "s.txt"), str(guest_path("cgacon")))
    assert done.status == 64
    assert "--screen needs --native" in done.error_line()
    assert not (tmp_path / "s.txt").exists()


def test_keys_no_key_types_are_a_usage_error():
    done = cli.pvtool("run", "--native", "--keys", "café", str(guest_path("cgacon")))
    assert done.status == 64
    assert "no key types 'é'" in done.error_line()
