"""Listings: one instruction a line, with its address and symbol, so that a unified
diff of the original and patched listings shows exactly what the port changed (and
`pvtool diffstat` can count it the way the Xen paper counted lines).

A kernel's listing has millions of lines (Linux: about 3 million) and a port changes a
few thousand, so the diff is built from the changes, never by diffing two whole
listings: the patcher knows which address ranges it rewrote. Each change becomes the
lines it removes and the lines that stand there now; only those and their context are
ever formatted. The result is a unified diff as GNU diff writes it (3 lines of context,
hunks closer than 6 lines joined), which `diffstat -m` and `pvtool diffstat` count alike.
"""

import difflib
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from operator import attrgetter

from pvtool.patch.discover import CodeMap
from pvtool.x86.isa import Undecodable, decode_all

BASELINE_HEADER = "# pvtool-baseline-lines: {}"
CONTEXT = 3  # lines of context around each change, as `diff -u` gives
_address = attrgetter("address")


class Symbolizer:
    """`name+0x1c` for an address, from (address, name) pairs."""

    def __init__(self, symbols: list[tuple[int, str]]):
        pairs = sorted(symbols)
        self._addresses = [a for a, _ in pairs]
        self._names = [n for _, n in pairs]

    def __call__(self, address: int) -> str:
        i = bisect_right(self._addresses, address) - 1
        if i < 0:
            return "?"
        offset = address - self._addresses[i]
        return self._names[i] + (f"+{offset:#x}" if offset else "")


def line(address: int, symbolize: Symbolizer, text: str) -> str:
    return f"{address:08x} <{symbolize(address)}>: {text}"


def item_text(item) -> str:
    """A listed instruction's text, or an undecodable run's `(bad) <hex>`."""
    if isinstance(item, Undecodable):
        return f"(bad) {item.data.hex()}"
    return f"{item.mnemonic} {item.op_str}".strip()


class Listing:
    """The original code's listing: a line per decoded instruction and per undecodable
    run, in address order. Nothing is decoded or formatted until a line is asked for:
    the listing is the code map's instruction starts and its undecodable runs, merged.
    """

    def __init__(self, code: CodeMap, symbolize: Symbolizer):
        self._code = code
        self._starts = code.starts  # instruction addresses, in order
        self._bad = code.undecodable  # in address order, between the instructions
        self._bad_lines = [bisect_left(self._starts, run.address) + k
                           for k, run in enumerate(self._bad)]  # their line numbers
        self._symbolize = symbolize

    def __len__(self) -> int:
        return len(self._starts) + len(self._bad)

    def index(self, address: int) -> int:
        """The number of lines before the first at ADDRESS or after it."""
        return (bisect_left(self._starts, address)
                + bisect_left(self._bad, address, key=_address))

    def item(self, index: int):
        """Line INDEX's instruction (an Insn) or undecodable run."""
        k = bisect_left(self._bad_lines, index)
        if k < len(self._bad) and self._bad_lines[k] == index:
            return self._bad[k]
        return self._code.instruction_at(self._starts[index - k])

    def lines(self, lo: int, hi: int) -> list[str]:
        return [line(item.address, self._symbolize, item_text(item))
                for item in map(self.item, range(lo, hi))]


@dataclass(frozen=True)
class Change:
    """The original code's lines at [start, end) give way to LINES."""

    start: int
    end: int
    lines: list[str]


def decode_listing(data: bytes, address: int, symbolize: Symbolizer, mode: int) -> list[str]:
    """A linear listing of code pvtool wrote itself (glue, stubs, patched ranges)."""
    return [line(item.address, symbolize, item_text(item))
            for item in decode_all(data, address, mode)]


@dataclass(frozen=True)
class _Edit:
    lo: int  # the original listing's lines [lo, hi) ...
    hi: int
    new: list[str]  # ... become these


def unified_diff(listing: Listing, changes: list[Change], added: list[str],
                 from_name: str, to_name: str) -> str:
    """The unified diff of LISTING and LISTING with CHANGES made (address order, no
    overlaps) and ADDED appended, headed by the baseline's size in lines."""
    edits = _edits(listing, _joined(changes))
    if added:
        edits.append(_Edit(len(listing), len(listing), added))
    out = [BASELINE_HEADER.format(len(listing))]
    if edits:
        out += [f"--- {from_name}", f"+++ {to_name}"]
    shift = 0  # how many lines the edits before this hunk added to the patched side
    for hunk in _hunks(edits):
        out += _hunk(listing, hunk, shift)
        shift += sum(len(e.new) - (e.hi - e.lo) for e in hunk)
    return "\n".join(out) + "\n"


def _joined(changes: list[Change]) -> list[Change]:
    """Changes that touch become one, so a run of rewritten instructions reads the same
    however it was cut into changes."""
    joined: list[Change] = []
    for change in changes:
        if joined and joined[-1].end == change.start:
            last = joined.pop()
            change = Change(last.start, change.end, last.lines + change.lines)
        joined.append(change)
    return joined


def _edits(listing: Listing, changes: list[Change]) -> list[_Edit]:
    """Each change as line edits: a line the patched image still has at the same
    address with the same text is context, not a change (difflib's matching, within
    the change's few lines)."""
    edits = []
    for change in changes:
        lo, hi = listing.index(change.start), listing.index(change.end)
        old = listing.lines(lo, hi)
        matcher = difflib.SequenceMatcher(None, old, change.lines, autojunk=False)
        edits += [_Edit(lo + i1, lo + i2, change.lines[j1:j2])
                  for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]
    return edits


def _hunks(edits: list[_Edit]) -> list[list[_Edit]]:
    """Edits grouped as diff groups them: at most 2 * CONTEXT unchanged lines apart."""
    hunks: list[list[_Edit]] = []
    for edit in edits:
        if hunks and edit.lo - hunks[-1][-1].hi <= 2 * CONTEXT:
            hunks[-1].append(edit)
        else:
            hunks.append([edit])
    return hunks


def _hunk(listing: Listing, edits: list[_Edit], shift: int) -> list[str]:
    old_lo = max(0, edits[0].lo - CONTEXT)
    old_hi = min(len(listing), edits[-1].hi + CONTEXT)
    new_size = old_hi - old_lo + sum(len(e.new) - (e.hi - e.lo) for e in edits)
    out = [f"@@ -{_range(old_lo, old_hi - old_lo)} +{_range(old_lo + shift, new_size)} @@"]
    at = old_lo
    for edit in edits:
        out += [" " + text for text in listing.lines(at, edit.lo)]
        out += ["-" + text for text in listing.lines(edit.lo, edit.hi)]
        out += ["+" + text for text in edit.new]
        at = edit.hi
    out += [" " + text for text in listing.lines(at, old_hi)]
    return out


def _range(start: int, size: int) -> str:
    """A hunk header's range, as GNU diff writes it: `first,count`, just `first` for
    one line, and the line before for none (POSIX diff, "Unified Format")."""
    if size == 1:
        return f"{start + 1}"
    return f"{start + (1 if size else 0)},{size}"
