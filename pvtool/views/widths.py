"""The room a table leaves on the terminal, for the views that lay themselves out by its
width (a column beside the others, or under them)."""

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from pvtool.console import UNBOUNDED_WIDTH

COLUMN_GAP = 3  # between two columns of rich's SIMPLE boxes: a blank rule, a space each side


def room_beside(console: Console, table: Table) -> int:
    """The width one more column would get beside TABLE on CONSOLE, with TABLE as wide as
    its cells (measured unbounded: rich caps a measure at the console's width)."""
    natural = Measurement.get(console, console.options.update_width(UNBOUNDED_WIDTH), table)
    return console.width - natural.maximum - COLUMN_GAP
