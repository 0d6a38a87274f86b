"""`--json FILE` and `--plot FILE`, checked before a minute of measuring rather than
after it, and written at the end with a line saying where."""

import os
from pathlib import Path

from pvtool import console
from pvtool.errors import OutputError, UsageError


def check_output(path: Path, what: str) -> None:
    """PATH can be written: its folder exists (it is not created: a typo should not
    leave a new folder behind), PATH is not a folder, and both allow writing."""
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"{what} {path}: no folder {folder}")
    if path.is_dir():
        raise OutputError(f"{what} {path}: is a folder, not a file")
    target = path if path.exists() else folder
    if not os.access(target, os.W_OK):
        raise OutputError(f"{what} {path}: {target} is not writable")


def check_suffix(path: Path, what: str, suffixes: list[str]) -> None:
    """PATH's suffix says its format: one of SUFFIXES (without the dot)."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in suffixes:
        raise UsageError(f"{what} {path}: the name must end in one of "
                         f"{', '.join('.' + s for s in suffixes)}")


def write_json(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise OutputError(f"--json {path}: cannot write: {exc.strerror or exc}") from None
    tell_where(path, "the JSON")


def tell_where(path: Path, what: str) -> None:
    """The one line at the end that says where an output went."""
    console.stderr.print(f"bench: wrote {what} to {path}", markup=False, highlight=False)
