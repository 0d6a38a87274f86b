"""Where two byte strings of one length differ, in time that grows with the image and
the number of changes, not with a Python loop over every byte: equal halves are
skipped by one comparison each (memcmp), and only small differing pieces are read byte
by byte. A patched kernel differs from its original in a few thousand small ranges
among megabytes of code."""

SMALL = 64  # below this, a byte loop is cheaper than more halving


def differing_spans(before: bytes, after: bytes) -> list[tuple[int, int]]:
    """[start, end) offsets of the runs of bytes that differ, in order."""
    if len(before) != len(after):
        raise ValueError(f"{len(before)} and {len(after)} bytes: nothing to compare")
    spans: list[tuple[int, int]] = []
    pending = [(0, len(before))]  # a stack, popped in address order
    while pending:
        lo, hi = pending.pop()
        if before[lo:hi] == after[lo:hi]:
            continue
        if hi - lo > SMALL:
            middle = (lo + hi) // 2
            pending += [(middle, hi), (lo, middle)]
            continue
        for offset in range(lo, hi):
            if before[offset] != after[offset]:
                _add(spans, offset)
    return spans


def _add(spans: list[tuple[int, int]], offset: int) -> None:
    if spans and spans[-1][1] == offset:
        spans[-1] = (spans[-1][0], offset + 1)
    else:
        spans.append((offset, offset + 1))
