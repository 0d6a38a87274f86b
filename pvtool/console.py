"""The one terminal object: all human-facing output goes through here.

Data a program may read (guest output, --json) goes to stdout; tables, status and
errors go to stderr, so `pvtool run guest.elf > out.txt` captures exactly what the
guest printed.
"""

import json
import sys

from rich.console import Console, ConsoleDimensions
from rich.markup import escape

# Wider than any line pvtool prints: a table written to a file or a pipe is never cut.
UNBOUNDED_WIDTH = 100_000


class TerminalConsole(Console):
    """A rich Console sized to the terminal when it writes to one, and otherwise (unless
    given a width) as wide as its widest line: rich would size a pipe or a log to 80
    columns or $COLUMNS and squeeze its tables, cutting addresses and reasons that a log
    should keep whole."""

    def __init__(self, *args, width: int | None = None, **kwargs):
        super().__init__(*args, width=width, **kwargs)
        self.given_width = width

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self.given_width is None and not self.is_terminal:
            return ConsoleDimensions(UNBOUNDED_WIDTH, size.height)
        return size


stdout = TerminalConsole(highlight=False, soft_wrap=True)
stderr = TerminalConsole(stderr=True, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """The single line a failure gets."""
    stderr.print(f"[bold red]pvtool: error:[/] {escape(message)}", markup=True,
                 highlight=False)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()
