"""Fuzzing grant_table_op and memory_op (issue 14): hostile arguments, and a grant
table full of hostile entries, against the hypervisor's dispatcher. After every call
the invariants of tests/hv/test_fuzz_hypercalls.py hold (no exception but -errno, the
page tables whole, the hypervisor's pages unchanged), and no grant is left marked in
use (GTF_reading, GTF_writing): a call ends every access it began. (The entries the
fuzzer writes never carry those two flags themselves: Xen clears them too.)
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvtool.hv.hypercalls import call
from tests.hv.harness import boot
from tests.hv.test_fuzz_hypercalls import check_invariants, check_result, hypervisor_snapshot
from tests.hv.xenguest import DEFAULT_NOTES, PAE_NOTES
from tests.profiles import examples

PAGE = 4096
GRANT_TABLE_OP, MEMORY_OP = 20, 12
GTF_IN_USE = 8 | 16
DOMID_SELF = 0x7FF0
MAX_EXAMPLES = examples(300)
SCRATCH = "scratch: .skip 8192\n"


def frames(ctx):
    return st.one_of(st.sampled_from(ctx["frames"]), st.integers(0, 0xFFFFF))


def grant_entry(ctx):
    return st.tuples(st.sampled_from([0, 1, 1, 1, 5, 2, 3, 0x101, 0xFFE7]),
                     st.sampled_from([0, 0, 0, 1, DOMID_SELF, 0x7FF2, 0xFFFF]),
                     frames(ctx)).map(lambda t: struct.pack("<HHI", *t))


def copy_op(ctx):
    ref_or_frame = st.one_of(st.integers(0, 20), st.sampled_from([511, 512, 0xFFFFFFFF]),
                             frames(ctx))
    domid = st.sampled_from([0, DOMID_SELF, 1, 0x7FF2])
    offset = st.sampled_from([0, 1, 8, 4000, 4095, 4096, 0xFFFF])
    length = st.sampled_from([0, 1, 8, 96, 4096, 4097, 0xFFFF])
    return st.tuples(ref_or_frame, domid, offset, ref_or_frame, domid, offset, length,
                     st.integers(0, 3)).map(
        lambda t: struct.pack("<IHHIHHHHhH", *t, 0x55, 0))


def argument_words(ctx):
    return st.lists(st.one_of(st.integers(0, 70), st.sampled_from(
        [DOMID_SELF, ctx["scratch"], ctx["scratch"] + PAGE, 0xFC000000 - 4, 0xFFFFFFFF,
         0x80000000]), st.integers(0, 0xFFFFFFFF)), min_size=1, max_size=16).map(
        lambda words: struct.pack(f"<{len(words)}I", *words))


def one_call(ctx):
    pointer = st.sampled_from([ctx["scratch"], ctx["scratch"] + 24, ctx["scratch"] + PAGE,
                               ctx["scratch"] + 2 * PAGE - 8, 0xFC000000, 0, 0xFFFFFFF0])
    count = st.sampled_from([0, 1, 1, 2, 5, 1024, 1025, 0x80000000, 0xFFFFFFFF])
    grant_op = st.tuples(st.just(GRANT_TABLE_OP), st.one_of(
        st.sampled_from([2, 5, 5, 5, 6, 8, 10]), st.integers(0, 0x2000)), pointer, count)
    memory_op = st.tuples(st.just(MEMORY_OP), st.one_of(
        st.sampled_from([2, 3, 4, 7, 9, 10]), st.integers(0, 0xFFFFFFFF)), pointer,
        st.integers(0, 0xFFFFFFFF))
    return st.one_of(grant_op, grant_op, memory_op)


def context(booted) -> dict:
    nr = booted.domain.nr_pages
    scratch = booted.guest["scratch"]
    table = booted.domain.grants
    return {"scratch": scratch,
            "frames": [scratch >> 12, (scratch >> 12) + 1, nr - 1, nr, 0,
                       booted.domain.pagetables.base_mfn, table.frame(0), table.frame(3),
                       0xFC410, 0xFC000]}


@st.composite
def scenario(draw, ctx):
    entries = draw(st.lists(st.tuples(st.integers(0, 20), grant_entry(ctx)), max_size=12))
    scratch = draw(st.lists(st.one_of(copy_op(ctx), argument_words(ctx)), max_size=6))
    calls = draw(st.lists(one_call(ctx), min_size=1, max_size=5))
    return entries, b"".join(scratch)[:2 * PAGE], calls


def in_use(booted) -> list[int]:
    table = booted.domain.grants
    memory = booted.memory
    data = memory.read_phys(table.frame(0) * PAGE, table.nr_frames * PAGE)
    flags = struct.unpack_from(f"<{len(data) // 8}Q", data)
    return [ref for ref, entry in enumerate(flags) if entry & GTF_IN_USE]


@pytest.mark.parametrize("idle_guest", [DEFAULT_NOTES, PAE_NOTES], ids=["2level", "pae"],
                         indirect=True)
def test_grant_and_memory_ops_keep_the_hypervisor_whole(idle_guest, idle):
    ctx = context(idle)

    @settings(max_examples=MAX_EXAMPLES, database=None,
              suppress_health_check=list(HealthCheck))
    @given(scenario(ctx))
    def fuzz(case):
        entries, scratch, calls = case
        booted = boot(idle_guest)
        frame0 = booted.domain.grants.frame(0) * PAGE
        for ref, entry in entries:
            booted.memory.write_phys(frame0 + 8 * ref, entry)
        booted.write("scratch", scratch)
        marked = in_use(booted)
        snapshot = hypervisor_snapshot(booted)
        for number, *args in calls:
            check_result(call(booted.domain, booted.domain.vcpu, number, tuple(args)))
            check_invariants(booted, snapshot)
            assert in_use(booted) == marked, "a grant is left marked in use"

    fuzz()
