"""The fast paths of the page-table hypercalls (hv/hypercalls/mmu.py,
Validator.switch_base): a one-entry mmuext_op with no done pointer skips the batch
loop, and NEW_BASEPTR to a validated base moves its counts in place. Each must refuse
what the general path refuses, with the same errno and message, and leave the frame
table as the general path (a batch with a done pointer) leaves it.

Calls go straight into the dispatcher on an idle domain, as in test_mmu.py, whose
helpers build the tables.
"""

import pytest

from pvtool.abi.xen import Hypercall
from pvtool.machine.cpu import CR3, ESI
from tests.hv.harness import boot, hypercall
from tests.hv.test_mmu import (
    GDT_VA,
    INVLPG_LOCAL,
    NEW_BASEPTR,
    PAGE,
    PTE_RO,
    PTE_RW,
    SCRATCH,  # noqa: F401 (the idle guest's .bss: conftest's idle_guest reads it)
    SI_SHARED_INFO,
    TLB_FLUSH_LOCAL,
    build_tables,
    frame,
    frame_table_state,
    mmuext,
    pt_base,
    second_directory,
    type_of,
)
from tests.hv.xenguest import DOMID_SELF, EFAULT, EINVAL, neg


def traced(booted):
    """The domain's --trace lines from here on (the refusals' messages)."""
    lines = []
    booted.domain.trace = True
    booted.domain.log = lines.append
    return lines


def switch(booted, mfn, *, done=None):
    """NEW_BASEPTR to MFN: one entry, so the fast path unless DONE is given."""
    return mmuext(booted, (NEW_BASEPTR, mfn), done=done)


def two_bases(booted):
    a = build_tables(booted)
    return a, second_directory(booted, a)


# -- refusals: the same on both paths ---------------------------------------------------
@pytest.mark.parametrize("done", [False, True], ids=["fast", "batch"])
@pytest.mark.parametrize("base", ["outside-ram", "shared-info", "hypervisor"])
def test_a_base_not_the_domains_is_refused_alike(idle, base, done):
    mfn = {"outside-ram": idle.machine.ram_size // PAGE,
           "shared-info": idle.u32(idle.cpu.read(ESI) + SI_SHARED_INFO) // PAGE,
           "hypervisor": GDT_VA // PAGE}[base]
    cr3, before, log = idle.cpu.read(CR3), frame_table_state(idle), traced(idle)
    assert switch(idle, mfn, done=frame(idle, 7) if done else None) == neg(EINVAL)
    assert len(log) == 1 and log[0].startswith("hypercall mmuext_op(")
    assert log[0].endswith(f": -EINVAL base frame {mfn:#x} is not the domain's")
    assert idle.cpu.read(CR3) == cr3
    assert frame_table_state(idle) == before


@pytest.mark.parametrize("done", [False, True], ids=["fast", "batch"])
def test_a_validated_table_of_another_level_is_refused_as_a_base(idle, done):
    """The L1 both directories share, validated and in use, is no page directory: a
    frame of another type."""
    a, b = two_bases(idle)
    assert switch(idle, a) == 0
    l1 = frame(idle, 1) // PAGE
    before, log = frame_table_state(idle), traced(idle)
    assert switch(idle, l1, done=frame(idle, 7) if done else None) == neg(EINVAL)
    assert log[-1].endswith(f"-EINVAL frame {l1:#x} is a page table: it cannot also be "
                            "a page directory")
    assert idle.cpu.read(CR3) == a * PAGE
    assert frame_table_state(idle) == before


def test_an_argument_the_hypervisor_cannot_read_is_efault_on_the_fast_path(idle):
    for ops in (0xFC000000, 0x7FFFFFF0 + idle.machine.ram_size, 0xFFFFFFF8):
        assert hypercall(idle, Hypercall.mmuext_op, ops, 1, 0, DOMID_SELF) == neg(EFAULT)


# -- counts: the fast path's equal the general path's ----------------------------------------
def test_many_switches_leave_the_counts_of_get_table_and_put_table(idle_guest):
    """Two idle domains switch between the same two bases 101 times: one with
    NEW_BASEPTR, one entry at a time (the fast path), the other with the validator's
    general get_table and put_table, as new_baseptr made them before it had a fast
    path. Every count, link and root ends the same, and the last base is loaded."""
    fast, general = boot(idle_guest), boot(idle_guest)
    ends = []
    for booted in (fast, general):
        a, b = two_bases(booted)
        order = [a if i % 2 == 0 else b for i in range(101)]
        if booted is fast:
            assert all(switch(booted, mfn) == 0 for mfn in order)
        else:
            tables = booted.domain.pagetables
            validator = tables.validator
            old = tables.base_mfn if tables.base_mfn in validator.roots else None
            for mfn in order:
                validator.get_table(mfn, validator.top, None, downgrade=tables.rules.downgrade)
                if old is not None:
                    validator.put_table(old, None)
                old = mfn
            tables.base_mfn = a
            booted.cpu.write(CR3, a * PAGE)
        assert booted.cpu.read(CR3) == a * PAGE
        assert type_of(booted, a * PAGE) == (2, 1, True)
        assert type_of(booted, b * PAGE) == (2, 0, True)
        ends.append(frame_table_state(booted))
    assert ends[0] == ends[1]


def test_switching_to_the_loaded_base_keeps_its_counts_and_reloads_cr3(idle):
    a, _ = two_bases(idle)
    assert switch(idle, a) == 0
    before = frame_table_state(idle)
    refs = idle.domain.frames.refs(a)
    idle.cpu.write(CR3, pt_base(idle))  # not the guest's doing: the next write puts it back
    assert switch(idle, a) == 0
    assert idle.cpu.read(CR3) == a * PAGE
    assert frame_table_state(idle) == before
    assert idle.domain.frames.refs(a) == refs
    assert idle.domain.pagetables.validator.roots[a] == 1


def test_a_batch_with_a_done_pointer_stops_at_the_refused_entry(idle):
    """count > 1: the fast path is not taken; the first entry is done, the second
    (a frame outside RAM) refused, the third never runs."""
    a, b = two_bases(idle)
    done = frame(idle, 7)
    outside = idle.machine.ram_size // PAGE
    assert mmuext(idle, (NEW_BASEPTR, a), (NEW_BASEPTR, outside), (NEW_BASEPTR, b),
                  done=done) == neg(EINVAL)
    assert idle.u32(done) == 1
    assert idle.cpu.read(CR3) == a * PAGE
    assert b not in idle.domain.pagetables.validator.roots


# -- TLB operations ----------------------------------------------------------------------
@pytest.mark.parametrize("cmd", [INVLPG_LOCAL, TLB_FLUSH_LOCAL], ids=["invlpg", "flush"])
def test_tlb_operations_change_no_count(idle, cmd):
    before = frame_table_state(idle)
    assert mmuext(idle, (cmd, frame(idle, 0))) == 0
    assert frame_table_state(idle) == before


def test_an_invlpg_flushes_through_the_cpus_page_flush(idle, monkeypatch):
    """INVLPG_LOCAL and UVMF_INVLPG name their page to Cpu.flush_tlb_page; a TLB flush
    and UVMF_TLB_FLUSH flush the whole TLB."""
    cpu, calls = idle.cpu, []
    monkeypatch.setattr(cpu, "flush_tlb_page", lambda va: calls.append(("page", va)))
    monkeypatch.setattr(cpu, "flush_tlb", lambda: calls.append(("all",)))
    va = frame(idle, 0)
    assert mmuext(idle, (INVLPG_LOCAL, va + 0x123)) == 0
    assert mmuext(idle, (TLB_FLUSH_LOCAL, 0)) == 0
    assert hypercall(idle, Hypercall.update_va_mapping, va, frame(idle, 1) | PTE_RW, 0,
                     2) == 0
    assert hypercall(idle, Hypercall.update_va_mapping, va, frame(idle, 1) | PTE_RO, 0,
                     1) == 0
    assert calls == [("page", va + 0x123), ("all",), ("page", va), ("all",)]
