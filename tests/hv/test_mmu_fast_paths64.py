"""NEW_USER_BASEPTR's fast path (Validator.switch_base, as NEW_BASEPTR's): a 64-bit
kernel gives a user L4 with every kernel L4 it loads, so switching between two
address spaces moves the user L4s' counts on every switch. The counts must end as
the validator's general get_table and put_table leave them, and every refusal stay.
Calls are made from an idle 64-bit domain's vCPU, as in test_mmu64.py, whose helpers
build the L4s.
"""

from tests.hv.harness import boot
from tests.hv.test_mmu import frame_table_state
from tests.hv.test_mmu64 import SCRATCH, mmuext, new_l4
from tests.hv.xenguest64 import EINVAL, NEW_USER_BASEPTR, PAGE, PIN_L1, RAM, neg


def test_many_user_base_switches_leave_the_counts_of_get_table_and_put_table(build64):
    """Two domains switch their user L4 between the same two tables 51 times: one
    through NEW_USER_BASEPTR, the other through get_table and put_table as
    new_user_baseptr made them before it had a fast path; then both clear it."""
    guest = build64("", bss=SCRATCH)
    fast, general = boot(guest, ram=RAM), boot(guest, ram=RAM)
    ends = []
    for booted in (fast, general):
        a, b = new_l4(booted, 0, {}), new_l4(booted, 1, {})
        order = [a if i % 2 == 0 else b for i in range(51)]
        tables = booted.domain.pagetables
        if booted is fast:
            assert all(mmuext(booted, (NEW_USER_BASEPTR, mfn)) == 0 for mfn in order)
            assert tables.user_base_mfn == a
            assert mmuext(booted, (NEW_USER_BASEPTR, 0)) == 0
        else:
            validator, old = tables.validator, None
            for mfn in order:
                validator.get_table(mfn, 4, None, downgrade=tables.rules.downgrade)
                if old is not None:
                    validator.put_table(old, None)
                old = mfn
            validator.put_table(old, None)
        assert tables.typed[a] == tables.typed[b] == 4  # validated, held by nothing
        assert a not in tables.validator.roots and b not in tables.validator.roots
        ends.append(frame_table_state(booted))
    assert ends[0] == ends[1]


def test_a_user_base_of_another_type_or_owner_is_refused_and_the_old_one_kept(build64):
    booted = boot(build64("", bss=SCRATCH), ram=RAM)
    a = new_l4(booted, 0, {})
    assert mmuext(booted, (NEW_USER_BASEPTR, a)) == 0
    l1 = new_l4(booted, 1, {})  # an empty table, read-only: pinned as an L1
    assert mmuext(booted, (PIN_L1, l1)) == 0
    before = frame_table_state(booted)
    for mfn in (l1, RAM // PAGE):
        assert mmuext(booted, (NEW_USER_BASEPTR, mfn)) == neg(EINVAL)
        assert booted.domain.pagetables.user_base_mfn == a
        assert frame_table_state(booted) == before
