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
from pvtool.machine.vga_text import (
    BLANK_CELL,
    COLUMNS,
    ROWS,
    TEXT_BUFFER,
    TEXT_BUFFER_SIZE,
    VgaText,
)

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

    cells: bytes  # ROWS * COLUMNS * CELL bytes from the screen's first cell
    cursor: int  # the cursor's cell, counted from the screen's first cell

    @property
    def rows(self) -> list[str]:
        width = COLUMNS * CELL
        return [_row_text(self.cells[row * width:(row + 1) * width]) for row in range(ROWS)]

    @property
    def rows_used(self) -> int:
        """Rows that show anything but blanks."""
        return sum(1 for row in self.rows if row)

    @property
    def cursor_row_column(self) -> tuple[int, int] | None:
        """Where the cursor is, or None when it is off the screen."""
        if not 0 <= self.cursor < ROWS * COLUMNS:
            return None
        return divmod(self.cursor, COLUMNS)

    def text(self) -> str:
        return "".join(row + "\n" for row in self.rows)

    def describe(self) -> str:
        where = self.cursor_row_column
        cursor = "off the screen" if where is None else f"at row {where[0]} column {where[1]}"
        return f"screen: {self.rows_used} of {ROWS} rows used, cursor {cursor}"

    def to_dict(self) -> dict:
        where = self.cursor_row_column
        return {"rows": self.rows, "rows_used": self.rows_used,
                "cursor": None if where is None else {"row": where[0], "column": where[1]}}


def _row_text(cells: bytes) -> str:
    return "".join(cp437_char(byte) for byte in cells[::CELL]).rstrip(" ")


def read_screen(memory: GuestMemory, vga: VgaText) -> TextScreen:
    """The screen now: the page of the text buffer the CRT controller's start address
    points at, and the cursor on it. A page that runs past the end of the 32 KiB
    window shows blanks there (departure: QEMU would show video memory the window
    does not reach)."""
    size = ROWS * COLUMNS * CELL
    offset = min(vga.crtc.start * CELL, TEXT_BUFFER_SIZE)
    visible = memory.read_phys(TEXT_BUFFER + offset, min(size, TEXT_BUFFER_SIZE - offset))
    cells = visible + BLANK_CELL * ((size - len(visible)) // CELL)
    return TextScreen(cells, vga.crtc.cursor - vga.crtc.start)
