"""The tree a diff applies to: its size, and whether the diff really applies to it.

Size is the number of lines of every text file under the directory (files with a NUL
byte are binary and skipped, as are version-control folders). With sloc, only C,
assembly and Python files count, and only their lines that hold code: not blank, not
wholly a comment (see `code_lines`).

A diff applies when every file it modifies or deletes exists in the tree and every hunk's
old side (its context and '-' lines) is the tree's text at the line the hunk names, and
no file it creates already exists with content. Paths are found as `patch -pN` finds
them: the smallest N (0 to 3) for which every file the diff needs exists. A series of
diffs applies when each applies to the tree the ones before it leave.
"""

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pvtool.diffstat.reader import DiffstatResult, FilePatch
from pvtool.errors import ImageError, InputMissingError

SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__"})
C_SUFFIXES = frozenset({".c", ".h"})
ASM_SUFFIXES = frozenset({".s", ".S", ".asm", ".inc"})
PY_SUFFIXES = frozenset({".py"})
MAX_STRIP = 3
# In a .S file a line starting with '#' is the preprocessor's when a directive follows.
_CPP_DIRECTIVE = re.compile(r"#\s*(include|define|undef|if|ifdef|ifndef|elif|else|endif"
                            r"|error|warning|pragma|line)\b")


@dataclass(frozen=True)
class Baseline:
    directory: Path
    lines: int
    measure: str  # "lines" or "sloc"
    files: int  # files counted
    strip: int | None = None  # the -pN the diff applied with (None: not checked)
    sources: tuple[str, ...] = ()  # the globs of the files counted (none: every file)

    def to_dict(self) -> dict:
        return {"directory": str(self.directory), "lines": self.lines,
                "measure": self.measure, "files": self.files, "strip": self.strip,
                "sources": list(self.sources)}


def size(directory: Path, sloc: bool = False, sources: tuple[str, ...] = ()) -> Baseline:
    """The baseline's size: all text lines, or with sloc the code lines of C, assembly
    and Python files; with SOURCES only of the files whose path under DIRECTORY
    matches one of those globs (fnmatch, `*` crosses '/'), such as the files one kernel
    of a tree is built from."""
    directory = Path(directory)
    if not directory.exists():
        raise InputMissingError(f"{directory}: no such baseline directory")
    if not directory.is_dir():
        raise InputMissingError(f"{directory}: is not a directory (--baseline takes the "
                                "tree the diff applies to)")
    total = files = 0
    for path in _files(directory):
        relative = path.relative_to(directory).as_posix()
        if sources and not any(fnmatch.fnmatchcase(relative, glob) for glob in sources):
            continue
        if sloc and path.suffix not in C_SUFFIXES | ASM_SUFFIXES | PY_SUFFIXES:
            continue
        data = _read(path)
        if data is None or b"\0" in data:
            continue
        text = data.decode("utf-8", errors="replace")
        total += code_lines(text, path.suffix) if sloc else count_lines(text)
        files += 1
    return Baseline(directory, total, "sloc" if sloc else "lines", files, None,
                    tuple(sources))


def count_lines(text: str) -> int:
    """Lines as wc -l counts them, plus a last line without its newline."""
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def code_lines(text: str, suffix: str) -> int:
    """Non-blank lines that are not wholly comment. C and .S: // and /* */ (a line with
    code beside a comment counts); assembly also ';' and, outside preprocessor
    directives, '#'; Python '#' (docstrings count as code, as the interpreter sees
    them). String literals are not parsed: a comment marker inside one is taken as one."""
    count = 0
    in_block = False
    c_like = suffix in C_SUFFIXES or suffix in ASM_SUFFIXES
    for raw in text.splitlines():
        line = raw.strip()
        if c_like:
            line, in_block = _strip_c_comments(line, in_block)
        if suffix in ASM_SUFFIXES:
            if line.startswith(";") or (line.startswith("#")
                                        and not _CPP_DIRECTIVE.match(line)):
                continue
        elif suffix in PY_SUFFIXES and line.startswith("#"):
            continue
        if line:
            count += 1
    return count


def _strip_c_comments(line: str, in_block: bool) -> tuple[str, bool]:
    """line without its /* */ and // comments; whether a block comment stays open."""
    out = []
    i = 0
    while i < len(line):
        if in_block:
            end = line.find("*/", i)
            if end < 0:
                return "".join(out).strip(), True
            i, in_block = end + 2, False
        elif line.startswith("/*", i):
            in_block = True
            i += 2
        elif line.startswith("//", i):
            break
        else:
            out.append(line[i])
            i += 1
    return "".join(out).strip(), in_block


def check_applies(result: DiffstatResult, baseline: Baseline, source: str) -> Baseline:
    """The baseline with the strip level the diff applies with; ImageError naming the
    first file or hunk that does not apply."""
    return check_series(((source, result),), baseline)


def check_series(diffs, baseline: Baseline) -> Baseline:
    """Whether DIFFS, (source, result) pairs, apply one after the other, as `patch`
    applies a series: each to the tree the ones before it left (kept in memory, the
    directory is never written). The baseline with the first diff's strip level."""
    tree = _Tree(baseline.directory)
    strips = [_apply_diff(result, tree, source) for source, result in diffs]
    return Baseline(baseline.directory, baseline.lines, baseline.measure, baseline.files,
                    strips[0] if strips else None, baseline.sources)


class _Tree:
    """The baseline directory as the diffs applied so far leave it: a file is read on
    first use and changed here; a deleted file is an empty one, as patch leaves it
    without -E."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.changed: dict[Path, list[str]] = {}

    def lines(self, path: Path) -> list[str] | None:
        if path in self.changed:
            return self.changed[path]
        data = _read(path) if path.is_file() else None
        if data is None:
            return None
        lines = [line.rstrip("\r") for line in data.decode("utf-8", errors="replace")
                 .split("\n")]
        if lines and lines[-1] == "":
            lines.pop()
        return lines

    def has(self, path: Path) -> bool:
        return self.lines(path) is not None


def _apply_diff(result: DiffstatResult, tree: _Tree, source: str) -> int:
    patches = [p for p in result.patches if p.hunks]
    needed = [p for p in patches if not _creates(p)]
    strip = _strip_level(needed, tree, source)
    for patch in patches:
        _apply_file(patch, tree, strip, source)
    return strip


def _creates(patch: FilePatch) -> bool:
    return patch.old_path is None or all(h.old_start == 0 and not h.old_lines
                                         for h in patch.hunks)


def _strip_level(needed: list[FilePatch], tree: _Tree, source: str) -> int:
    """The -pN that finds every file the diff needs; else the error names the first file
    missing at the N that finds the most."""
    if not needed:
        return 0
    directory = tree.directory
    found = [sum(tree.has(_locate(p.old_path, directory, n)) for p in needed)
             for n in range(MAX_STRIP + 1)]
    best = max(range(MAX_STRIP + 1), key=lambda n: (found[n], -n))
    if found[best] == len(needed):
        return best
    missing = next(p for p in needed if not tree.has(_locate(p.old_path, directory, best)))
    raise ImageError(f"{source}: does not apply to {directory}: {missing.old_path} is not "
                     f"in it (as {_locate(missing.old_path, directory, best)})")


def _locate(path: str, directory: Path, strip: int) -> Path:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return directory.joinpath(*parts[strip:]) if len(parts) > strip else directory / "\0"


def _apply_file(patch: FilePatch, tree: _Tree, strip: int, source: str) -> None:
    directory = tree.directory
    if _creates(patch):
        target = _locate(patch.name, directory, strip)
        if tree.lines(target):
            raise ImageError(f"{source}: does not apply to {directory}: it creates "
                             f"{patch.name}, which already exists")
        tree.changed[target] = _applied([], patch)
        return
    path = _locate(patch.old_path, directory, strip)
    lines = tree.lines(path)
    if lines is None:
        raise ImageError(f"{source}: does not apply to {directory}: cannot read {path}")
    for hunk in patch.hunks:
        old = hunk.old_lines
        start = _hunk_start(hunk)
        found = lines[start:start + len(old)] if start >= 0 else []
        if found != old:
            where = next((i for i, (a, b) in enumerate(zip(old, found, strict=False))
                          if a != b), len(found))
            has = f"the file has {found[where]!r}" if where < len(found) else "the file ends"
            raise ImageError(f"{source}: does not apply to {directory}: "
                             f"{patch.old_path or patch.name} line "
                             f"{max(start, 0) + where + 1}: the diff expects "
                             f"{old[where]!r}, {has}")
    tree.changed[path] = _applied(lines, patch)


def _hunk_start(hunk) -> int:
    """Where a hunk's old side starts, from 0 (an empty old side is after its line)."""
    return hunk.old_start - 1 if hunk.old_lines else hunk.old_start


def _applied(lines: list[str], patch: FilePatch) -> list[str]:
    """LINES with the patch's hunks (already checked to match) applied."""
    out, at = [], 0
    for hunk in patch.hunks:
        start = _hunk_start(hunk)
        out += lines[at:start]
        out += [text for mark, text in hunk.lines if mark != "-"]
        at = start + len(hunk.old_lines)
    return out + lines[at:]


def _files(directory: Path):
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(names):
            path = Path(root, name)
            if path.is_file():
                yield path


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
