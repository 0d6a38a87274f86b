"""differing_spans finds exactly the runs of bytes that differ, as a byte-by-byte
comparison does, however the differences fall against its halving."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvtool.patch.byte_changes import SMALL, differing_spans


def byte_by_byte(before: bytes, after: bytes) -> list[tuple[int, int]]:
    spans: list[list[int]] = []
    for offset, (x, y) in enumerate(zip(before, after, strict=True)):
        if x == y:
            continue
        if spans and spans[-1][1] == offset:
            spans[-1][1] += 1
        else:
            spans.append([offset, offset + 1])
    return [tuple(span) for span in spans]


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=4 * SMALL + 7),
       st.lists(st.tuples(st.integers(0, 1 << 16), st.binary(min_size=1, max_size=9)),
                max_size=6))
def test_the_spans_are_the_byte_by_byte_differences(before, writes):
    after = bytearray(before)
    for at, data in writes:
        if before:
            at %= len(before)
            after[at:at + len(data)] = data[:len(before) - at]
    assert differing_spans(before, bytes(after)) == byte_by_byte(before, bytes(after))


def test_changes_far_apart_in_a_megabyte_are_found():
    before = bytes(1 << 20)
    after = bytearray(before)
    after[5], after[6], after[700_000:700_003] = 1, 2, b"abc"
    after[-1] = 9
    assert differing_spans(before, bytes(after)) == [
        (5, 7), (700_000, 700_003), ((1 << 20) - 1, 1 << 20)]


def test_strings_of_two_lengths_are_refused():
    with pytest.raises(ValueError):
        differing_spans(b"ab", b"abc")
