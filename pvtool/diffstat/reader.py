"""How invasive a port is, counted from a unified diff the way `diffstat -m` counts it.

The Xen paper (Table 2) sized its ports as "lines modified or added" against the lines
of the original source. Classic diffstat with -m approximates modified lines per hunk:
min(inserted, deleted) of a hunk's lines count as modified and only the remainders as
inserted or deleted. Xen's figure is then the raw count of '+' lines, inserted +
modified, and its share is that over the baseline's size.

The reading of a diff follows Debian's diffstat 1.65 so the numbers agree with it
(tests/test_diffstat_oracle.py runs the real program):
- a hunk's lines count only within the extent its @@ header declares, so a deleted line
  "-- x" or an added "++ y" inside a hunk is never mistaken for a file header;
- after a hunk, a line that is neither another hunk nor a header closes the file, so a
  mail signature ("-- ") or other trailer is not counted;
- "Binary files ... differ", "GIT binary patch" and "Only in DIR: NAME" each make a
  changed file with no lines; a file whose hunks change nothing (pure renames, mode
  changes) is not listed at all;
- files are listed once, sorted by name, summed if the diff names them twice.
Deliberate differences, where diffstat 1.65 miscounts files (never lines of a good diff):
- every binary file is one changed file named by its own path; diffstat names a deleted
  one "/dev/null" (merging several into one) and sees "GIT binary patch" only on the
  line after a "diff --git" and an "index" line, so new, deleted, renamed or re-moded
  binaries in `git diff --binary` vanish from its count;
- a valid "@@ -a +b @@" line outside any file (a commit message quoting one) is prose
  here, while diffstat opens a hunk there and miscounts the file header after it.
Names are the new side's path (the old side's for a deletion), without git's a/ and b/.

A listing diff from `pvtool patch` also carries `# pvtool-baseline-lines: N` before its
first header: N is the length of the original listing, the baseline of the share.
"""

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pvtool.errors import ImageError, InputMissingError

BASELINE_MARKER = "# pvtool-baseline-lines:"
DEV_NULL = "/dev/null"

# diffstat reads a hunk header with sscanf("@@ -%[0-9,] +%[0-9,] @%c"): blanks optional.
_HUNK_HEADER = re.compile(r"@@\s*-([0-9,]+)\s*\+([0-9,]+)\s*@@")
_RANGE = re.compile(r"(\d+)(?:,(\d+))?")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class FileStat:
    """One file's counts. kind is "text", "binary" or "only" (in one tree only)."""

    name: str
    inserted: int = 0
    deleted: int = 0
    modified: int = 0
    kind: str = "text"

    @property
    def changed(self) -> int:
        return self.inserted + self.deleted + self.modified


@dataclass(frozen=True)
class Hunk:
    """One hunk as read: where it starts on each side and its lines as (mark, text),
    mark " " (context), "-" or "+". Kept to check the diff against a baseline tree and
    to sort a listing diff's lines into categories; never part of the counts."""

    old_start: int
    new_start: int
    lines: tuple[tuple[str, str], ...]

    @property
    def old_lines(self) -> list[str]:
        return [text for mark, text in self.lines if mark != "+"]


@dataclass(frozen=True)
class FilePatch:
    """The hunks of one listed file. old_path is the path its ---/rename header names
    on the old side (git's a/ dropped), None for a new file or when no header named one."""

    name: str
    old_path: str | None
    hunks: tuple[Hunk, ...]


@dataclass(frozen=True)
class Totals:
    files: int
    inserted: int
    deleted: int
    modified: int

    @property
    def added_or_modified(self) -> int:
        """Xen's "lines modified or added": every '+' line, i.e. inserted + modified."""
        return self.inserted + self.modified


@dataclass(frozen=True)
class DiffstatResult:
    files: tuple[FileStat, ...]
    baseline_lines: int | None = None
    patches: tuple[FilePatch, ...] = field(default=(), compare=False, repr=False)

    @property
    def totals(self) -> Totals:
        return Totals(
            files=len(self.files),
            inserted=sum(f.inserted for f in self.files),
            deleted=sum(f.deleted for f in self.files),
            modified=sum(f.modified for f in self.files),
        )

    @property
    def share_percent(self) -> float | None:
        """Lines modified or added as a percentage of the baseline; None without one."""
        if not self.baseline_lines:
            return None
        return 100.0 * self.totals.added_or_modified / self.baseline_lines

    def summary_line(self) -> str:
        """Exactly the last line `diffstat -m` prints, leading blank included."""
        totals = self.totals
        parts = [f" {_plural(totals.files, 'file')} changed"]
        for count, noun, mark in ((totals.inserted, "insertion", "+"),
                                  (totals.deleted, "deletion", "-"),
                                  (totals.modified, "modification", "!")):
            if count:  # diffstat leaves out the zero counts, but never the files
                parts.append(f"{_plural(count, noun)}({mark})")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        totals = self.totals
        return {
            "files": [asdict(f) for f in self.files],
            "totals": {**asdict(totals), "added_or_modified": totals.added_or_modified},
            "baseline_lines": self.baseline_lines,
            "share_percent": self.share_percent,
            "summary": self.summary_line(),
        }


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def measure(path: Path) -> DiffstatResult:
    """Read the diff at path and count it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputMissingError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputMissingError(f"{path}: is a directory, not a diff") from None
    except OSError as exc:
        raise InputMissingError(f"{path}: cannot read: {exc.strerror}") from None
    return parse(data, source=str(path))


def parse(diff: bytes | str, source: str = "<diff>") -> DiffstatResult:
    """Count a unified diff given as bytes or text; source names it in errors."""
    if isinstance(diff, bytes):
        diff = diff.decode("utf-8", errors="replace")
    lines = [line.rstrip("\r") for line in diff.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # the empty string after the final newline is not a line
    reader = _DiffReader(source)
    reader.read(lines)
    if not reader.found_diff and any(_is_content(line) for line in lines):
        raise ImageError(f"{source}: not a unified diff (no file headers or hunks found)")
    return DiffstatResult(files=reader.file_stats(), baseline_lines=reader.baseline,
                          patches=reader.file_patches())


def _is_content(line: str) -> bool:
    return bool(line.strip()) and not line.startswith(BASELINE_MARKER)


class _Tally:
    """A file's counts while the diff is being read."""

    def __init__(self, name: str):
        self.name = name
        self.kind = "text"
        self.inserted = self.deleted = self.modified = 0

    def add_hunk(self, plus: int, minus: int) -> None:
        modified = min(plus, minus)
        self.inserted += plus - modified
        self.deleted += minus - modified
        self.modified += modified

    def stat(self) -> FileStat:
        return FileStat(self.name, self.inserted, self.deleted, self.modified, self.kind)


class _Hunk:
    """The body of one hunk: how much of its declared extent is still to come."""

    def __init__(self, target: str, old_start: int, old_size: int, new_start: int,
                 new_size: int):
        self.target = target
        self.old_start, self.new_start = old_start, new_start
        self.old_left, self.new_left = old_size, new_size
        self.plus = self.minus = 0
        self.lines: list[tuple[str, str]] = []

    def take(self, line: str) -> bool:
        """Count line if it belongs to the hunk; False for a line that cannot."""
        mark = line[:1]
        if mark == "-":
            self.minus += 1
            self.old_left -= self.old_left > 0
        elif mark == "+":
            self.plus += 1
            self.new_left -= self.new_left > 0
        elif mark in ("", " "):
            self.old_left -= self.old_left > 0
            self.new_left -= self.new_left > 0
            mark = " "
        if mark in " -+":
            self.lines.append((mark, line[1:]))
        elif not (mark == "\\" and "newline" in line):  # "\ No newline at end of file"
            return False
        return True

    @property
    def complete(self) -> bool:
        return self.old_left + self.new_left == 0


class _DiffReader:
    """A line-by-line reader of unified diffs that tallies per file."""

    def __init__(self, source: str):
        self.source = source
        self.tallies: dict[str, _Tally] = {}
        self.old_paths: dict[str, str | None] = {}  # listed name -> old side's path
        self.hunks: dict[str, list[Hunk]] = {}
        self.current: str | None = None  # the file that hunks are counted into
        self.hunk: _Hunk | None = None
        self.after_hunk = False  # the previous line ended a hunk
        self.git_section = False  # inside "diff --git", before its ---/+++ header
        self.git_prefixes = False  # that section's paths carry a/ and b/
        self.git_old_path: str | None = None  # that section's "rename from"
        self.found_diff = False
        self.seen_header = False
        self.baseline: int | None = None

    def read(self, lines: list[str]) -> None:
        for index, line in enumerate(lines):
            following = lines[index + 1] if index + 1 < len(lines) else None
            self._line(line, following, first=index == 0)
        self._end_hunk()

    def file_patches(self) -> tuple[FilePatch, ...]:
        return tuple(FilePatch(name, self.old_paths.get(name), tuple(hunks))
                     for name, hunks in sorted(self.hunks.items()))

    def file_stats(self) -> tuple[FileStat, ...]:
        kept = [t.stat() for t in self.tallies.values()]
        kept = [s for s in kept if s.changed or s.kind != "text"]
        return tuple(sorted(kept, key=lambda s: s.name))

    def _line(self, line: str, following: str | None, first: bool) -> None:
        if self.hunk is not None:
            if self.hunk.take(line):
                if self.hunk.complete:
                    self._end_hunk()
                    self.after_hunk = True
                return
            # A line the hunk cannot hold cuts it short; diffstat then reads that line
            # only as a file marker and, as after any hunk, checks the next one.
            self._end_hunk()
            self._file_marker(line)
            self.after_hunk = True
            return
        if self.after_hunk:
            self.after_hunk = False
            if not (_hunk_sizes(line) or line.startswith(("--- ", "+++ "))):
                self.current = None
        self._header_or_marker(line, following, first)

    def _header_or_marker(self, line: str, following: str | None, first: bool) -> None:
        sizes = _hunk_sizes(line)
        if sizes and first:  # a .rej file: hunks with no header, named after the file
            self.current = self.source
        if sizes and self.current is not None:  # outside a file, "@@" is prose
            self.found_diff = True
            self.hunk = _Hunk(self.current, *_hunk_header(line))
            if self.hunk.complete:
                self._end_hunk()
        elif line.startswith("--- ") and following and following.startswith("+++ "):
            self._file_header(line[4:], following[4:])
        elif line.startswith("+++ "):
            pass  # the second half of a header, read with the first
        elif line.startswith(BASELINE_MARKER) and not self.seen_header:
            self.baseline = self._baseline(line)
        else:
            self._file_marker(line)

    def _file_marker(self, line: str) -> None:
        """The lines that start or describe a file without a ---/+++ header."""
        if line.startswith("diff --git "):
            self._git_section(line[len("diff --git "):])
        elif line.startswith("diff "):
            self.git_section = False
            self.current = None
        elif self.git_section and line.startswith(("rename from ", "copy from ")):
            self.git_old_path = _unquote(line.split(" from ", 1)[1])
        elif self.git_section and line.startswith(("rename to ", "copy to ")):
            self.current = _unquote(line.split(" to ", 1)[1])
        elif line.startswith("GIT binary patch") and self.current is not None:
            self._mark(self.current, "binary")
        elif line[:1] in "Bb" and line[1:].startswith("inary files ") and line.endswith(
                " differ"):
            self._binary_line(line[len("Binary files "):-len(" differ")])
        elif line.startswith("Only in ") and ": " in line:
            directory, name = line[len("Only in "):].split(": ", 1)
            self._mark(f"{directory.rstrip('/')}/{name}", "only")
            self.current = None

    def _git_section(self, paths: str) -> None:
        self.git_section = self.seen_header = self.found_diff = True
        self.git_prefixes = paths.startswith(("a/", '"a/'))
        self.current = _git_new_path(paths, self.git_prefixes)
        self.git_old_path = None

    def _file_header(self, old_text: str, new_text: str) -> None:
        old, new = _header_path(old_text), _header_path(new_text)
        if self.git_section and self.git_prefixes:
            old, new = _drop_prefix(old, "a/"), _drop_prefix(new, "b/")
        self.current = old if new == DEV_NULL else new
        if self.git_section and self.git_old_path is not None:
            old = self.git_old_path
        self.old_paths.setdefault(self.current, None if old == DEV_NULL else old)
        self.git_section = False
        self.seen_header = self.found_diff = True

    def _binary_line(self, paths: str) -> None:
        if self.current is not None and self.git_section:
            self._mark(self.current, "binary")
            return
        # Like diffstat, assume the first name does not contain " and ".
        old, _, new = paths.partition(" and ")
        self._mark(old if new == DEV_NULL else new, "binary")
        self.current = None

    def _mark(self, name: str, kind: str) -> None:
        self._tally(name).kind = kind
        self.seen_header = self.found_diff = True

    def _tally(self, name: str) -> _Tally:
        return self.tallies.setdefault(name, _Tally(name))

    def _end_hunk(self) -> None:
        hunk, self.hunk = self.hunk, None
        if hunk is not None:
            self._tally(hunk.target).add_hunk(hunk.plus, hunk.minus)
            self.hunks.setdefault(hunk.target, []).append(
                Hunk(hunk.old_start, hunk.new_start, tuple(hunk.lines)))

    def _baseline(self, line: str) -> int:
        value = line[len(BASELINE_MARKER):].strip()
        if not value.isdigit():
            raise ImageError(f"{self.source}: bad baseline line {line!r} "
                             "(want '# pvtool-baseline-lines: N')")
        return int(value)


def _hunk_sizes(line: str) -> tuple[int, int] | None:
    """The old and new line counts of a hunk header, or None if line is not one."""
    header = _hunk_header(line)
    return None if header is None else (header[1], header[3])


def _hunk_header(line: str) -> tuple[int, int, int, int] | None:
    """(old start, old count, new start, new count) of a hunk header, or None."""
    match = _HUNK_HEADER.match(line)
    if not match:
        return None
    old, new = _RANGE.fullmatch(match[1]), _RANGE.fullmatch(match[2])
    if not (old and new):
        return None
    # "@@ -5 +5 @@" means one line at 5: a missing count is 1.
    return int(old[1]), int(old[2] or 1), int(new[1]), int(new[2] or 1)


def _header_path(text: str) -> str:
    """The path of a ---/+++ header: quoted as git quotes it, or up to the tab before a
    timestamp as diff -u writes it."""
    if text.startswith('"'):
        return _unquote(text)
    return text.split("\t", 1)[0].rstrip()


def _git_new_path(paths: str, prefixed: bool) -> str:
    """The new path of `diff --git OLD NEW` (which leaves blanks unquoted)."""
    quoted = list(_QUOTED.finditer(paths))
    if quoted and quoted[-1].end() == len(paths):
        new = _unquote(quoted[-1][0])
    elif prefixed and " b/" in paths:
        half = (len(paths) - 1) // 2  # unrenamed "a/X b/X" splits in the middle
        same = paths[half] == " " and paths[2:half] == paths[half + 3:]
        new = paths[half + 1:] if same else paths[paths.rindex(" b/") + 1:]
    else:
        new = paths.rsplit(" ", 1)[-1]
    return _drop_prefix(new, "b/") if prefixed else new


def _drop_prefix(path: str, prefix: str) -> str:
    return path[len(prefix):] if path.startswith(prefix) else path


def _unquote(text: str) -> str:
    """A name as git writes it when it is not plain: in C quotes, its bytes in octal."""
    match = _QUOTED.match(text)
    if not match:
        return text
    raw = match[1].encode().decode("unicode_escape").encode("latin-1")
    return raw.decode("utf-8", errors="replace")
