"""machine/screen.py: the 4000 bytes of the text screen as lines of Unicode."""

from pvtool.machine.screen import TextScreen, read_screen
from pvtool.machine.vga_text import (
    COLUMNS,
    ROWS,
    TEXT_BUFFER,
    TEXT_BUFFER_SIZE,
    VgaText,
    firmware_screen,
)

BLANK = b" \x07"


def screen_with(row: int, text: bytes, cursor: int = 0) -> TextScreen:
    cells = bytearray(BLANK * (ROWS * COLUMNS))
    start = row * COLUMNS * 2
    cells[start:start + 2 * len(text):2] = text
    return TextScreen(bytes(cells), cursor)


def test_each_row_is_a_line_with_its_trailing_blanks_trimmed():
    screen = screen_with(3, b"  hello")
    assert screen.text().split("\n")[:5] == ["", "", "", "  hello", ""]
    assert screen.text().count("\n") == ROWS
    assert screen.rows_used == 1


def test_bytes_are_code_page_437_glyphs_control_codes_included():
    # Box drawing, a smiley (0x01), a heart (0x03), the house (0x7F), a NUL as blank.
    screen = screen_with(0, b"\xc9\xcd\xbb\x01\x03\x7f\x00x")
    assert screen.rows[0] == "╔═╗☺♥⌂ x"


def test_the_description_names_rows_used_and_the_cursor():
    screen = screen_with(0, b"x", cursor=2 * COLUMNS + 5)
    assert screen.describe() == f"screen: 1 of {ROWS} rows used, cursor at row 2 column 5"
    assert screen.to_dict()["cursor"] == {"row": 2, "column": 5}


class WindowMemory:
    """Physical memory holding only the text window."""

    def __init__(self, window: bytes):
        self.window = window

    def read_phys(self, address: int, size: int) -> bytes:
        offset = address - TEXT_BUFFER
        assert offset >= 0 and offset + size <= len(self.window)
        return self.window[offset:offset + size]


def vga_at(start: int, cursor: int) -> VgaText:
    vga = VgaText()
    regs = vga.crtc.registers
    regs[0x0C], regs[0x0D], regs[0x0E], regs[0x0F] = start >> 8, start & 0xFF, \
        cursor >> 8, cursor & 0xFF
    return vga


def test_the_screen_begins_where_the_start_address_points_and_the_cursor_follows():
    window = bytearray(firmware_screen())
    window[2 * 3 * COLUMNS] = ord("S")  # the first cell of row 3
    screen = read_screen(WindowMemory(bytes(window)), vga_at(3 * COLUMNS, 3 * COLUMNS + 1))
    assert screen.rows[0] == "S"
    assert screen.cursor_row_column == (0, 1)


def test_a_page_past_the_windows_end_shows_blanks_there_and_the_cursor_may_be_off_it():
    last_cells = TEXT_BUFFER_SIZE // 2 - COLUMNS  # the window's last row
    screen = read_screen(WindowMemory(firmware_screen()), vga_at(last_cells, 0))
    assert len(screen.cells) == ROWS * COLUMNS * 2
    assert screen.rows_used == 0
    assert screen.describe().endswith("cursor off the screen")
    assert screen.to_dict()["cursor"] is None
