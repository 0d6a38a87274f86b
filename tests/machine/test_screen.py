"""machine/screen.py: the 4000 bytes of the text screen as lines of Unicode."""

from pvtool.machine.screen import TextScreen
from pvtool.machine.vga_text import COLUMNS, ROWS

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
