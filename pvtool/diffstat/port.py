"""The port, measured: any input `pvtool diffstat` takes, counted by diffstat's rules
and sorted into Table 2's categories, automatic and hand-written lines apart.

Inputs:
- a listing diff from `pvtool patch` (it carries its baseline: the original listing's
  length, one instruction a line);
- two images, ORIG and PATCHED: their listing diff, made in memory (images.py);
- any unified diff (`-` reads it from standard input) with an optional --baseline DIR,
  the tree it applies to: the tree's size is the baseline, and a diff that does not
  apply to it is refused (baseline.py);
- a series of unified diffs: several DIFF arguments, or a folder of *.diff (applied in
  name order, as the Makefile applies patches/minikern-xen) with its diffstat.toml
  (series.py: the baseline's sources and the categories). Counted as `diffstat -m -p1`
  counts them together; with --baseline DIR each must apply to the tree the ones
  before it leave (baseline.check_series). Two ELF images are still two images;
- a patch set folder (patches/NAME: rules.toml and glue.asm). What a patch set's line
  count means: the lines a person wrote to port a kernel with pvtool, every line of
  every file of the folder, comments included, counted as `diff -ruN` of an empty
  folder against it counts them (all insertions). It is the hand-written half of
  pvtool's port; the listing diff of a guest is the automatic half it produces. An
  optional --baseline DIR (a guest's source, say) sizes what it ports.

Xen's figure is "lines modified or added": every '+' line of the diff, diffstat -m's
insertions plus modifications. Every part below carries its own '+' and '-' lines, so
categories add up to the total exactly (diffstat's modified = min(+, -) per hunk is a
property of a whole hunk and is not split).

Categories. `--category NAME=GLOB` (repeatable, first match wins; NAME one of Table 2's
or an alias: arch, net, block, hypervisor; or a name of your own) sorts by path: GLOB is
matched (fnmatch, `*` crosses '/') against the path as listed and against it with its
leading directories dropped one at a time, so `drivers/net/*` matches
`b/drivers/net/e1000.c`. A file no pattern matches is "uncategorized". `--automatic
GLOB` marks generated files; the others are hand-written.
In a listing diff every line names the function it belongs to (`ADDR <name+off>:`), and
the parts are sorted by it:
- sites: lines in the kernel's own functions, its privileged and sensitive
  instructions rewritten in place, replaced by a jump to a detour or an int3 trap site.
  Automatic (the patcher writes them from rules.toml). Hypervisor-specific non-driver:
  this is the code Xen's Linux port changed by hand in its own arch tree, which Table 2
  counts as Xen-specific (non-driver).
- stubs (pv_stub_N): the detours the patcher generated, each a site's replacement and
  the instructions it displaced. Automatic; hypervisor-specific non-driver, as above.
- glue (every other pv_ function): the patch set's glue.asm, assembled. Hand-written
  (a person wrote it; pvtool only assembles it); hypervisor-specific non-driver (the
  PV entry, hypercall wrappers, virtual control registers: none of it a driver).
  `--category NAME=GLOB` applies here too, GLOB matched against the function's name
  (`--category block=pv_blk*` for a block driver in the glue).
"""

import fnmatch
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from pvtool.diffstat import baseline as baseline_mod
from pvtool.diffstat import series, xen_table2
from pvtool.diffstat.baseline import Baseline
from pvtool.diffstat.reader import DiffstatResult, FileStat, parse
from pvtool.errors import InputMissingError, UsageError

AUTOMATIC, HAND_WRITTEN = "automatic", "hand-written"
UNCATEGORIZED = "uncategorized"
PATCH_SET_FILE = "rules.toml"
ELF_MAGIC = b"\x7fELF"
STDIN_PATH = "-"  # a diff read from standard input
_LISTING_LINE = re.compile(r"[0-9a-f]+ <([^>+]*)(?:\+0x[0-9a-f]+)?>: ")
# The patcher's generated code: the detours' stubs, and a 64-bit port's per-vector
# trap entries (patch/layout64.py), which nobody writes by hand.
_STUB = re.compile(r"pv_stub_\d+$|pv_trap_entries$")

# Why each part of a listing diff sits where it does (port.py's docstring says more).
SITES_WHY = ("the kernel's privileged instructions rewritten from rules.toml: what "
             "Xen's Linux port changed by hand in its arch tree (Table 2: Xen-specific)")
STUBS_WHY = "detours the patcher generated for sites whose replacement does not fit"
GLUE_WHY = ("the patch set's glue.asm, written by hand: PV entry, hypercall wrappers, "
            "virtual control registers; no driver")
PATCH_SET_WHY = ("the patch set: the rules and glue a person wrote to port to the "
                 "hypervisor's interface")


@dataclass(frozen=True)
class CategoryRule:
    name: str
    pattern: str

    @classmethod
    def parse(cls, text: str) -> "CategoryRule":
        name, sep, pattern = text.partition("=")
        if not sep or not name.strip() or not pattern.strip():
            raise UsageError(f"--category {text!r}: want NAME=GLOB, e.g. "
                             "'virtual network driver=drivers/xen/net/*'")
        return cls(xen_table2.canonical(name), pattern.strip())

    def matches(self, path: str) -> bool:
        parts = path.split("/")
        return any(fnmatch.fnmatchcase("/".join(parts[i:]), self.pattern)
                   for i in range(len(parts)))


@dataclass(frozen=True)
class Part:
    """Lines of the port that share a name, category and origin."""

    name: str
    category: str
    origin: str  # AUTOMATIC or HAND_WRITTEN
    why: str
    added: int  # '+' lines: lines modified or added
    removed: int  # '-' lines


@dataclass(frozen=True)
class CategoryRow:
    name: str
    automatic: int
    hand_written: int
    linux: int | None
    xp: int | None

    @property
    def total(self) -> int:
        return self.automatic + self.hand_written


@dataclass(frozen=True)
class PortMeasure:
    kind: str  # "listing diff", "images", "unified diff", "patch set"
    source: str
    diffstat: DiffstatResult
    parts: tuple[Part, ...]
    baseline: Baseline | None = None
    baseline_measure: str = "lines"  # what the baseline counts: "lines" or "sloc"
    notes: tuple[str, ...] = field(default=())

    @property
    def added_or_modified(self) -> int:
        return self.diffstat.totals.added_or_modified

    @property
    def share_percent(self) -> float | None:
        return self.diffstat.share_percent

    def categories(self) -> list[CategoryRow]:
        """Table 2's four rows always, then any other category measured."""
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for part in self.parts:
            sums[part.category][part.origin == HAND_WRITTEN] += part.added
        rows = [CategoryRow(c.name, *sums.pop(c.name, (0, 0)), c.linux, c.xp)
                for c in xen_table2.CATEGORIES]
        rows += [CategoryRow(name, auto, hand, None, None)
                 for name, (auto, hand) in sorted(sums.items(),
                                                  key=lambda kv: kv[0] == UNCATEGORIZED)]
        return rows

    def to_dict(self) -> dict:
        data = self.diffstat.to_dict()
        data.update({
            "input": {"kind": self.kind, "source": self.source},
            "baseline": (self.baseline.to_dict() if self.baseline is not None else
                         {"lines": self.diffstat.baseline_lines,
                          "measure": self.baseline_measure}),
            "lines_modified_or_added": self.added_or_modified,
            "categories": [{"name": r.name, "automatic": r.automatic,
                            "hand_written": r.hand_written, "total": r.total,
                            "xen_linux": r.linux, "xen_xp": r.xp}
                           for r in self.categories()],
            "parts": [vars(p).copy() for p in self.parts],
            "xen": {"linux": {"lines": xen_table2.LINUX_TOTAL,
                              "share_percent": xen_table2.LINUX_SHARE_PERCENT},
                    "xp": {"lines": xen_table2.XP_TOTAL,
                           "share_percent": xen_table2.XP_SHARE_PERCENT}},
        })
        return data


def measure_port(inputs: tuple[Path, ...], baseline_dir: Path | None = None,
                 sloc: bool = False, categories: tuple[str, ...] = (),
                 automatic: tuple[str, ...] = (), patch_set: str | None = None) -> PortMeasure:
    rules = [CategoryRule.parse(text) for text in categories]
    if not inputs:
        raise UsageError("diffstat takes a diff, a series of diffs (several, or their "
                         "folder), a patch set folder, or two images")
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        folder = Path(inputs[0])
        if (folder / PATCH_SET_FILE).is_file():
            return _patch_set(folder, baseline_dir, sloc, rules)
        return _series_folder(folder, baseline_dir, sloc, rules, automatic)
    if len(inputs) == 2 and all(map(_is_elf, inputs)):
        if baseline_dir is not None:
            raise UsageError("--baseline is for source diffs and patch sets; two images "
                             "carry their baseline (the original listing)")
        return _images(*inputs, rules, patch_set)
    diffs = _read_series(inputs)
    if len(diffs) == 1 and diffs[0][1].baseline_lines is not None:
        if baseline_dir is not None:
            raise UsageError(f"{inputs[0]}: is a listing diff, which carries its baseline; "
                             "--baseline is for source diffs")
        return _listing("listing diff", diffs[0][0], diffs[0][1], rules)
    return _unified(diffs, baseline_dir, sloc, rules, automatic)


def _is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as file:
            return file.read(len(ELF_MAGIC)) == ELF_MAGIC
    except OSError:
        return False  # a missing or unreadable input is reported as a diff


def _read_series(inputs) -> list[tuple[str, DiffstatResult]]:
    """Each input read and counted: (its name, its counts); an image, a listing diff
    among several, or a file given twice is refused."""
    seen: set[str] = set()
    diffs = []
    for path in inputs:
        if str(path) in seen:
            raise UsageError(f"{path}: given twice; a series names each diff once")
        seen.add(str(path))
        data = _read_diff(Path(path))
        if data.startswith(ELF_MAGIC):
            raise UsageError(f"{path}: is an ELF image, not a diff (give two: pvtool "
                             "diffstat ORIG.elf PATCHED.elf)")
        diffs.append((str(path), parse(data, source=str(path))))
    if len(diffs) > 1:
        listing = next((name for name, r in diffs if r.baseline_lines is not None), None)
        if listing is not None:
            raise UsageError(f"{listing}: is a listing diff, which is measured alone (or "
                             "beside a series with --versus)")
    return diffs


def _read_diff(path: Path) -> bytes:
    """The diff at PATH; `-` is standard input, as for diff(1) and patch(1)."""
    try:
        return sys.stdin.buffer.read() if str(path) == STDIN_PATH else path.read_bytes()
    except FileNotFoundError:
        raise InputMissingError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputMissingError(f"{path}: is a directory, not a diff (nor a patch set: "
                                f"no {PATCH_SET_FILE})") from None
    except OSError as exc:
        raise InputMissingError(f"{path}: cannot read: {exc.strerror}") from None


def _images(original: Path, patched: Path, rules, patch_set: str | None) -> PortMeasure:
    from pvtool.diffstat.images import listing_diff

    for path in (original, patched):
        if not Path(path).exists():
            raise InputMissingError(f"{path}: no such file")
    text = listing_diff(original, patched, patch_set)
    return _listing("images", f"{original} -> {patched}", parse(text), rules)


def _listing(kind: str, source: str, result: DiffstatResult, rules) -> PortMeasure:
    """Each '+' and '-' line goes to sites, stubs or glue by the function it names."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for patch in result.patches:
        for hunk in patch.hunks:
            for mark, text in hunk.lines:
                if mark == " ":
                    continue
                function = _function(text)
                kind_of_line = _listing_part(function)
                category = _category(function, rules, xen_table2.HYPERVISOR_SPECIFIC)
                counts[(kind_of_line, category)][mark == "-"] += 1
    origin = {"sites": AUTOMATIC, "stubs": AUTOMATIC, "glue": HAND_WRITTEN}
    why = {"sites": SITES_WHY, "stubs": STUBS_WHY, "glue": GLUE_WHY}
    order = {"sites": 0, "stubs": 1, "glue": 2}
    parts = tuple(Part(name, category, origin[name], why[name], added, removed)
                  for (name, category), (added, removed)
                  in sorted(counts.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])))
    return PortMeasure(kind, source, result, parts)


def _function(text: str) -> str:
    match = _LISTING_LINE.match(text)
    return match[1] if match else ""


def _listing_part(function: str) -> str:
    if _STUB.match(function):
        return "stubs"
    return "glue" if function.startswith("pv_") else "sites"


def _category(path: str, rules, default: str) -> str:
    return next((rule.name for rule in rules if rule.matches(path)), default)


def _series_folder(folder: Path, baseline_dir: Path | None, sloc: bool, rules,
                   automatic: tuple[str, ...]) -> PortMeasure:
    """The folder's *.diff in name order (the order the Makefile applies them in), with
    the settings of its diffstat.toml: --category rules given on the command line
    first, then the folder's; the baseline counted over its sources."""
    diffs = sorted(folder.glob("*.diff"))
    if not diffs:
        raise InputMissingError(f"{folder}: is a directory, not a diff (nor a patch set: "
                                f"no {PATCH_SET_FILE}; nor a series: no *.diff)")
    settings = series.read_settings(folder)
    rules = [*rules, *(CategoryRule.parse(text) for text in settings.categories)]
    return _unified(_read_series(diffs), baseline_dir, sloc, rules, automatic,
                    str(folder), settings.sources)


def _unified(diffs: list[tuple[str, DiffstatResult]], baseline_dir: Path | None,
             sloc: bool, rules, automatic: tuple[str, ...], source: str | None = None,
             sources: tuple[str, ...] = ()) -> PortMeasure:
    """One diff, or a series counted as diffstat counts several files at once."""
    result = diffs[0][1] if len(diffs) == 1 else _joined(diffs)
    base = None
    if baseline_dir is not None:
        base = baseline_mod.size(baseline_dir, sloc, sources)
        base = baseline_mod.check_series(diffs, base)
        result = replace(result, baseline_lines=base.lines)
    generated = [CategoryRule(AUTOMATIC, pattern) for pattern in automatic]
    parts = []
    for stat in result.files:
        origin = AUTOMATIC if any(g.matches(stat.name) for g in generated) else HAND_WRITTEN
        category = _category(stat.name, rules, UNCATEGORIZED)
        why = ("matches the category pattern " + next(r.pattern for r in rules if r.name == category
                                            and r.matches(stat.name))
               if category != UNCATEGORIZED else "no --category pattern matches it")
        parts.append(Part(stat.name, category, origin, why, stat.inserted + stat.modified,
                          stat.deleted + stat.modified))
    kind = "unified diff" if len(diffs) == 1 else "diff series"
    return PortMeasure(kind, source or " ".join(name for name, _ in diffs), result,
                       tuple(parts), base, "sloc" if sloc else "lines")


def _joined(diffs: list[tuple[str, DiffstatResult]]) -> DiffstatResult:
    """The series as one diff: a file named by two diffs is listed once, summed, as
    `diffstat -m A B` lists it."""
    merged: dict[str, FileStat] = {}
    for _, result in diffs:
        for stat in result.files:
            were = merged.get(stat.name)
            merged[stat.name] = stat if were is None else replace(
                were, inserted=were.inserted + stat.inserted,
                deleted=were.deleted + stat.deleted, modified=were.modified + stat.modified)
    return DiffstatResult(tuple(merged[name] for name in sorted(merged)),
                          patches=tuple(p for _, r in diffs for p in r.patches))


def _patch_set(folder: Path, baseline_dir: Path | None, sloc: bool, rules) -> PortMeasure:
    """Every file of the folder as a new file: the diff `diff -ruN EMPTY FOLDER` prints."""
    files = [p for p in sorted(folder.rglob("*"))
             if p.is_file() and not any(part in baseline_mod.SKIPPED_DIRS
                                        for part in p.relative_to(folder).parts)]
    chunks = []
    for file in files:
        data = file.read_bytes()
        if b"\0" in data:
            continue
        text = data.decode("utf-8", errors="replace")
        lines = text.splitlines()
        name = f"{folder.name}/{file.relative_to(folder).as_posix()}"
        chunks.append(f"--- /dev/null\n+++ {name}\n@@ -0,0 +1,{len(lines)} @@\n"
                      + "".join(f"+{line}\n" for line in lines))
    result = parse("".join(chunks), source=str(folder))
    base = None
    if baseline_dir is not None:
        base = baseline_mod.size(baseline_dir, sloc)
        result = replace(result, baseline_lines=base.lines)
    parts = tuple(
        Part(stat.name, _category(stat.name, rules, xen_table2.HYPERVISOR_SPECIFIC),
             HAND_WRITTEN, PATCH_SET_WHY, stat.inserted + stat.modified, 0)
        for stat in result.files)
    return PortMeasure("patch set", str(folder), result, parts, base,
                       "sloc" if sloc else "lines")
