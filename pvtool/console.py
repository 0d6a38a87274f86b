"""The one terminal object: all human-facing output goes through here.

Data a program may read (guest output, --json) goes to stdout; tables, status and
errors go to stderr, so `pvtool run guest.elf > out.txt` captures exactly what the
guest printed.
"""

import json
import sys

from rich.console import Console
from rich.markup import escape

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """The single line a failure gets."""
    stderr.print(f"[bold red]pvtool: error:[/] {escape(message)}", markup=True,
                 highlight=False)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()
