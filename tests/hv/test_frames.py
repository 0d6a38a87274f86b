"""hv/frames.py's one-call move of a base between validated tables
(FrameTable.move_validated_base, NEW_BASEPTR's hot path): what it takes and drops
equals get_page_and_type, count_up and their put and count_down, and it touches
nothing where the general path must run instead."""

import pytest

from pvtool.hv.frames import ONE, PINNED, VALIDATED, XEN_L2, FrameTable, PageType

L2 = int(PageType.L2)
A, B, DOMID = 0x10, 0x11, 1


def table_of_two_bases() -> tuple[FrameTable, dict]:
    """Frames A and B validated page directories, A held by a base (its general and
    type reference and a root), B by nothing, as after a switch away from B."""
    frames, roots = FrameTable(), {}
    frames.assign(DOMID, 0, 0x100)
    frames.set_type_info(A, L2 | VALIDATED | ONE)
    frames.set_type_info(B, L2 | VALIDATED)
    frames.get_page(A)
    roots[A] = 1
    return frames, roots


def state(frames: FrameTable, roots: dict) -> tuple:
    return ({mfn: frames.refs(mfn) for mfn in (A, B)},
            {mfn: frames.type_info(mfn) for mfn in (A, B)}, dict(roots))


def test_a_move_takes_and_drops_what_the_general_path_does():
    moved, roots = table_of_two_bases()
    general, general_roots = table_of_two_bases()
    assert moved.move_validated_base(B, A, L2, roots)
    general.get_page_and_type(B, general.type_info(B) + ONE)
    general.count_up(general_roots, B)
    general.put_page_and_type(A)
    general.count_down(general_roots, A)
    assert state(moved, roots) == state(general, general_roots)
    assert state(moved, roots) == ({A: 0, B: 1}, {A: L2 | VALIDATED, B: L2 | VALIDATED | ONE},
                                   {B: 1})


def test_a_move_to_the_base_held_changes_nothing():
    frames, roots = table_of_two_bases()
    before = state(frames, roots)
    assert frames.move_validated_base(A, A, L2, roots)
    assert state(frames, roots) == before


@pytest.mark.parametrize("why", ["unvalidated", "another level", "the Xen L2",
                                 "in a transaction", "no type"])
def test_anything_but_a_validated_table_of_the_level_is_left_to_the_general_path(why):
    frames, roots = table_of_two_bases()
    level = L2
    if why == "unvalidated":
        frames.set_type_info(B, L2)
    elif why == "another level":
        level = int(PageType.L4)
    elif why == "the Xen L2":
        frames.set_type_info(B, L2 | XEN_L2 | VALIDATED)
    elif why == "no type":
        frames.set_type_info(B, 0)
    before = state(frames, roots)
    if why == "in a transaction":
        with frames.transaction():
            assert not frames.move_validated_base(B, A, level, roots)
    else:
        assert not frames.move_validated_base(B, A, level, roots)
    assert state(frames, roots) == before


def test_a_pinned_table_moves_with_its_pin_kept():
    frames, roots = table_of_two_bases()
    frames.set_type_info(B, L2 | VALIDATED | PINNED | ONE)
    assert frames.move_validated_base(B, A, L2, roots)
    assert frames.type_info(B) == L2 | VALIDATED | PINNED | 2 * ONE
