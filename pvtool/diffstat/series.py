"""A series folder's settings: patches/NAME/ holding *.diff (applied in name order)
and, optionally, diffstat.toml saying how `pvtool diffstat patches/NAME` measures them:

    sources = ["minikern/*", "lib/*.c"]   # globs under --baseline: the kernel's files
    categories = ["hypervisor=xen/*", "arch=*"]   # as --category NAME=GLOB

sources: the files of the baseline tree that the ported kernel is built from, so its
share is of that kernel and not of every program that shares the tree (the whole tree
is still what the series must apply to). categories: each file's Table 2 category, first
match wins, after any --category given on the command line.
"""

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pvtool.errors import ImageError

SETTINGS_FILE = "diffstat.toml"
KEYS = ("sources", "categories")


@dataclass(frozen=True)
class SeriesSettings:
    sources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


def read_settings(folder: Path) -> SeriesSettings:
    """FOLDER's diffstat.toml, or no settings without one; ImageError for a bad one."""
    path = folder / SETTINGS_FILE
    if not path.is_file():
        return SeriesSettings()
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ImageError(f"{path}: cannot read: {exc}") from None
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ImageError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    return SeriesSettings(*(_strings(data, key, path) for key in KEYS))


def _strings(data: dict, key: str, path: Path) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageError(f"{path}: {key} must be a list of strings")
    return tuple(value)
