"""NEW_USER_BASEPTR's fast path (Validator.switch_base, as NEW_BASEPTR's): a 64-bit
kernel gives a user L4 with every kernel L4 it loads, so switching between two
address spaces moves the user L4s' counts on every switch. The counts must end as
the validator's general get_table and put_table leave them, and every refusal stay.
Calls are made from an idle 64-bit domain's vCPU, as in test_mmu64.py, whose helpers
build the L4s.
"""

import struct

import pytest

from pvtool.machine.cpu import CR3
from tests.hv.harness import boot, hypercall
from tests.hv.test_mmu import frame_table_state
from tests.hv.test_mmu64 import SCRATCH, mmuext, new_l4, phys, update_va_mapping, va
from tests.hv.xenguest import HC
from tests.hv.xenguest64 import (
    DOMID_SELF,
    EFAULT,
    EINVAL,
    NEW_BASEPTR,
    NEW_USER_BASEPTR,
    PAGE,
    PIN_L1,
    RAM,
    neg,
)


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


# -- the kernel's two-entry mov cr3 (NEW_BASEPTR + NEW_USER_BASEPTR), read in one copy ----
def mmuext_counted(booted, *ops: tuple[int, int]) -> tuple[int, int]:
    """mmuext_op with a done pointer (_batch's path): (result, entries done)."""
    booted.write("args", b"".join(struct.pack("<IIQQ", cmd, 0, arg1, 0) for cmd, arg1 in ops))
    done = booted.guest["args"] + PAGE // 2
    booted.write(phys(booted, done), struct.pack("<I", 0xFFFF))
    result = hypercall(booted, HC.mmuext_op, booted.guest["args"], len(ops), done, DOMID_SELF)
    return result, booted.u32(phys(booted, done))


def two_bases(booted) -> tuple[int, int, int]:
    """The kernel's base, a user L4 and an L1 pinned (no L4): the pair's entries."""
    a, l1 = new_l4(booted, 0, {}), new_l4(booted, 1, {})
    assert mmuext(booted, (PIN_L1, l1)) == 0
    return booted.cpu.read(CR3) // PAGE, a, l1


def test_the_kernels_two_entry_mov_cr3_loads_both_bases(build64):
    booted = boot(build64("", bss=SCRATCH), ram=RAM)
    kernel, user, _ = two_bases(booted)
    assert mmuext(booted, (NEW_BASEPTR, kernel), (NEW_USER_BASEPTR, user)) == 0
    tables = booted.domain.pagetables
    assert (tables.base_mfn, tables.user_base_mfn) == (kernel, user)
    assert tables.typed[user] == 4 and user in tables.validator.roots


@pytest.mark.parametrize("bad", [0, 1])
def test_a_two_entry_call_stops_at_its_bad_entry_as_the_batch_does(build64, bad):
    """The pair without a done pointer (one copy, no batch loop) and with one (the
    batch loop, which counts): the same refusal, the same entries done, the same
    counts. The bad entry is a user base that is an L1."""
    guest = build64("", bss=SCRATCH)
    fast, counted = boot(guest, ram=RAM), boot(guest, ram=RAM)
    ends = []
    for booted in (fast, counted):
        kernel, user, l1 = two_bases(booted)
        ops = [(NEW_USER_BASEPTR, user), (NEW_USER_BASEPTR, user)]
        ops[bad] = (NEW_USER_BASEPTR, l1)
        if booted is fast:
            assert mmuext(booted, *ops) == neg(EINVAL)
        else:
            assert mmuext_counted(booted, *ops) == (neg(EINVAL), bad)
        tables = booted.domain.pagetables
        assert tables.user_base_mfn == (user if bad else 0)
        ends.append(frame_table_state(booted))
    assert ends[0] == ends[1]


def test_a_two_entry_call_across_a_page_runs_its_first_entry_before_the_fault(build64):
    """A pair whose second entry lies on an unmapped page: the first runs, the second
    is -EFAULT, as Xen's loop reads each entry just before it runs."""
    booted = boot(build64("", bss=SCRATCH), ram=RAM)
    kernel, user, _ = two_bases(booted)
    last = va(booted, 3)  # a scratch page unmapped, the pair begins 24 bytes before it
    assert update_va_mapping(booted, last, 0) == 0
    first = last - 24
    booted.memory.write_phys(phys(booted, first), struct.pack("<IIQQ", NEW_USER_BASEPTR,
                                                              0, user, 0))
    assert hypercall(booted, HC.mmuext_op, first, 2, 0, DOMID_SELF) == neg(EFAULT)
    assert booted.domain.pagetables.user_base_mfn == user
