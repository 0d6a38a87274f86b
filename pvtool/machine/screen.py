"""The text screen as a person sees it: the 80x25 cells of the VGA's text buffer turned
into lines of Unicode, for `pvtool run --screen` and the run summary.

A cell is a byte of code page 437 and an attribute byte. The text keeps the
characters and drops the attributes (the 4000 bytes themselves are `cells`). Each of
the 25 rows is one line, its trailing blanks (spaces and NULs, which the adapter
draws alike) trimmed, so that the file diffs well and row N is line N+1. Code page
437's bytes 0x01-0x1F and 0x7F are drawn as the glyphs the IBM PC's character ROM
holds (Unicode's mapping of them), not as control characters: a screen has none.
"""

from dataclasses import dataclass

from pvtool.machine.memory import GuestMemory
from pvtool.machine.vga_text import COLUMNS, ROWS, TEXT_BUFFER, VgaText

CELL = 2  # character, attribute
# Code page 437's glyphs for the bytes Python's cp437 codec decodes as controls.
LOW_GLYPHS = " ☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼"
DEL_GLYPH = "⌂"


def cp437_char(byte: int) -> str:
    if byte < len(LOW_GLYPHS):
        return LOW_GLYPHS[byte]
    if byte == 0x7F:
        return DEL_GLYPH
    return bytes((byte,)).decode("cp437")


@dataclass(frozen=True)
class TextScreen:
    """What the screen shows when the run ends: the cells and the cursor's cell."""

    cells: bytes  # ROWS * COLUMNS * CELL bytes from the start of the text buffer
    cursor: int

    @property
    def rows(self) -> list[str]:
        width = COLUMNS * CELL
        return [_row_text(self.cells[row * width:(row + 1) * width]) for row in range(ROWS)]

    @property
    def rows_used(self) -> int:
        """Rows that show anything but blanks."""
        return sum(1 for row in self.rows if row)

    @property
    def cursor_row_column(self) -> tuple[int, int]:
        return divmod(self.cursor, COLUMNS)

    def text(self) -> str:
        return "".join(row + "\n" for row in self.rows)

    def describe(self) -> str:
        row, column = self.cursor_row_column
        return f"screen: {self.rows_used} of {ROWS} rows used, cursor at row {row} column {column}"

    def to_dict(self) -> dict:
        row, column = self.cursor_row_column
        return {"rows": self.rows, "rows_used": self.rows_used,
                "cursor": {"row": row, "column": column}}


def _row_text(cells: bytes) -> str:
    return "".join(cp437_char(byte) for byte in cells[::CELL]).rstrip(" ")


def read_screen(memory: GuestMemory, vga: VgaText) -> TextScreen:
    """The screen now: the first page of the text buffer and the CRT controller's
    cursor."""
    return TextScreen(memory.read_phys(TEXT_BUFFER, ROWS * COLUMNS * CELL), vga.crtc.cursor)
