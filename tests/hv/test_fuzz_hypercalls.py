"""Hypercall fuzzing (issue 7): hostile arguments and guest memory against the
hypervisor's dispatcher, with the hypervisor's invariants checked after every call.

A small Xen guest (tests/hv/xenguest.py) is booted afresh for every example (about
4 ms), so nothing a call changes leaks into the next example. Each example is a short
sequence of hypercalls with generated numbers (0-60), arguments and contents of the
guest's scratch pages, run through pvtool.hv.hypercalls.call as the int 0x82 entry
runs them. After EVERY call:

- no exception escapes but DomainCrash, which the trap handler turns into a crash
  (machine.stop of kind CRASH with a reason): the harness does the same and checks it;
- the result is 0, a non-negative value, or -errno with errno one of Xen's;
- every frame typed as a page table is RAM the domain owns, CR3 is the base the
  hypervisor validated, and no present entry of the current hierarchy (walked here,
  not with pvtool's walker) maps a frame the domain does not own, nor a typed frame
  writable; the hypervisor's L2 slots are the hypervisor's;
- the hypervisor's own pages are unchanged: the reserved GDT entries, the page tables
  of its range, the machine-to-phys table and the trampoline code.

The second half runs a guest that issues pseudo-random hypercalls (an xorshift from a
seed) under `pvtool run`, which must end with a clean stop, never status 70.
"""

from __future__ import annotations

import json
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvtool.hv import layout
from pvtool.hv.errors import DomainCrash
from pvtool.hv.hypercalls import call
from pvtool.hv.hypercalls.common import NO_RESULT
from pvtool.machine.cpu import CR3
from pvtool.machine.stop import StopKind
from tests.campaign import Figures, summary
from tests.cli import pvtool
from tests.hv.harness import boot
from tests.hv.xenguest import DEFAULT_NOTES, PAE_NOTES
from tests.profiles import examples

PAGE = 4096
P, RW, PS = 1, 2, 0x80
# Xen's error numbers (xen/include/public/errno.h), typed here, not imported.
# EPERM ENOENT ESRCH ENXIO EACCES EFAULT EBUSY EEXIST ENODEV EINVAL ENOSPC EDOM ENOSYS
# ENODATA ETIME EOPNOTSUPP ENOBUFS
XEN_ERRNOS = {1, 2, 3, 6, 13, 14, 16, 17, 19, 22, 28, 33, 38, 61, 62, 95, 105}
HV_2LEVEL, HV_PAE = 0xFC000000, 0xF5800000
UNMAPPED = 0x40000000
SCRATCH_PAGES = 4
# full strength; a tenth on a developer's machine; `make fuzz` runs 5,000 examples in each
# paging mode (about 80 ms each on a loaded core: hypothesis's drawing, the boot and
# the invariants' walk after every call, which the random callers below spread thinner)
MAX_EXAMPLES = examples(800, campaign=5_000)

SCRATCH = "".join(f"scratch{i}: .skip 4096\n" for i in range(SCRATCH_PAGES))


class Stats:
    calls = 0
    examples = 0
    crashes = 0
    seconds = 0.0
    results: dict[str, int] = {}


# -- strategies ------------------------------------------------------------------------
def pointer(ctx):
    """An address a hostile guest might pass: its scratch pages (mostly), its page
    tables, the hypervisor's range, unmapped memory, boundaries, anything."""
    scratch = ctx["scratch"]
    return st.one_of(
        st.integers(0, SCRATCH_PAGES * PAGE - 1).map(lambda off: scratch + off),
        st.integers(0, SCRATCH_PAGES - 1).map(lambda i: scratch + i * PAGE),
        st.sampled_from(ctx["table_addresses"]),
        st.sampled_from([0, 4, PAGE - 4, UNMAPPED, ctx["hv"], ctx["hv"] - 4, ctx["hv"] - 1,
                         layout.SHARED_INFO, layout.GDT, layout.M2P, layout.TRAMPOLINE,
                         layout.M2P_L1, 0xFFFFFFFC, 0xFFFFFFFF, 0x7FFFFFFF,
                         ctx["ram_end"] - 4, ctx["ram_end"], ctx["mapped_end"] - 4,
                         ctx["mapped_end"]]),
        st.integers(0, 0xFFFFFFFF),
    )


def value(ctx):
    """An argument word: small numbers, frames (owned, typed, foreign), page-table
    entries, machine addresses of entries, pointers, boundaries."""
    frames = st.one_of(st.sampled_from(ctx["interesting_frames"]),
                       st.integers(0, ctx["nr_pages"] + 16))
    flags = st.integers(0, 0xFFF)
    return st.one_of(
        st.integers(0, 8),
        frames,
        st.tuples(frames, flags).map(lambda t: t[0] << 12 | t[1]),  # a PTE
        st.tuples(st.sampled_from(ctx["table_frames"]), st.integers(0, 1023))
          .map(lambda t: t[0] * PAGE + 4 * t[1]),  # an entry's machine address
        pointer(ctx),
        st.sampled_from([0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 1024, 1025, 0x7FF0, 0xE019,
                         0xE021, 0xE02B, 0xE033, 0x10000]),
        st.integers(0, 0xFFFFFFFF),
    )


def context(booted) -> dict:
    domain = booted.domain
    tables = domain.pagetables
    scratch = booted.guest["scratch0"]
    hv = domain.hypervisor_start
    table_frames = sorted(tables.typed)
    nr = domain.nr_pages
    mapped_end = booted.guest["stack_top"] + 0x100000  # well past it: the builder maps
    return {
        "scratch": scratch, "hv": hv, "nr_pages": nr, "ram_end": nr * PAGE,
        "mapped_end": mapped_end & ~0xFFF,
        "table_frames": table_frames,
        "table_addresses": [f * PAGE for f in table_frames],
        "interesting_frames": table_frames + [scratch >> 12, nr - 1, nr, nr + 1,
                                              layout.SHARED_INFO >> 12, layout.GDT >> 12,
                                              layout.M2P >> 12, layout.M2P_L1 >> 12,
                                              layout.PRIVATE_L1 >> 12, 0xFFFFF, 0],
    }


# -- invariants ------------------------------------------------------------------------
def hypervisor_snapshot(booted) -> dict[str, bytes]:
    memory = booted.memory
    nr = booted.domain.nr_pages
    gdt = b"".join(memory.read_phys(layout.GDT + 8 * index, 8)
                   for index in sorted(layout.reserved_gdt_entries()))
    return {
        "reserved GDT entries": gdt,
        "hypervisor L1s": memory.read_phys(layout.M2P_L1, 5 * PAGE),
        "M2P table": memory.read_phys(layout.M2P, 4 * nr),
        "trampoline code": memory.read_phys(layout.TRAMPOLINE, PAGE),
    }


def u32s(memory, mfn: int) -> tuple[int, ...]:
    return struct.unpack("<1024I", memory.read_phys(mfn * PAGE, PAGE))


def u64s(memory, mfn: int, count: int = 512) -> tuple[int, ...]:
    return struct.unpack(f"<{count}Q", memory.read_phys(mfn * PAGE, 8 * count))


def mapped_frames_2level(booted, base: int):
    """(frame, writable, where) for every present leaf of the hierarchy at BASE."""
    memory = booted.memory
    l2 = u32s(memory, base)
    expected = layout.hypervisor_slots(booted.domain.pagetables.glue).entries
    for slot in range(layout.FIRST_SLOT, 1024):
        assert l2[slot] == expected.get(slot, 0), f"hypervisor L2 slot {slot} = {l2[slot]:#x}"
    for slot in range(layout.FIRST_SLOT):
        pde = l2[slot]
        if not pde & P:
            continue
        assert not pde & PS, f"a superpage at L2 slot {slot}"
        table = pde >> 12
        yield table, False, f"L2[{slot}] (its L1)"
        # A linear map (an L2 read as an L1, as Xen's pv-linear-pt allows) shows the
        # hypervisor's own slots too: read-only, as Xen insists of any linear map.
        linear = booted.domain.pagetables.typed.get(table) == 2
        assert not (linear and pde & RW), f"L2[{slot}] maps an L2 writable"
        for index, pte in enumerate(u32s(memory, table)):
            if pte & P and not (linear and index >= layout.FIRST_SLOT):
                yield pte >> 12, bool(pde & RW and pte & RW), f"L2[{slot}] -> {table:#x}[{index}]"


FRAME_MASK = 0x000F_FFFF_FFFF_F000


def mapped_frames_pae(booted, base: int):
    memory = booted.memory
    l3 = u64s(memory, base, 4)
    for s3, l3e in enumerate(l3):
        if not l3e & P:
            continue
        l2_mfn = (l3e & FRAME_MASK) >> 12
        yield l2_mfn, False, f"L3[{s3}]"
        for s2, l2e in enumerate(u64s(memory, l2_mfn)):
            if not l2e & P or (s3 == 3 and s2 >= layout.PAE_FIRST_SLOT):
                continue
            assert not l2e & PS, f"a superpage at L3[{s3}] L2[{s2}]"
            l1_mfn = (l2e & FRAME_MASK) >> 12
            yield l1_mfn, False, f"L3[{s3}] L2[{s2}]"
            for index, pte in enumerate(u64s(memory, l1_mfn)):
                if pte & P:
                    yield ((pte & FRAME_MASK) >> 12, bool(l2e & RW and pte & RW),
                           f"L3[{s3}] L2[{s2}] -> {l1_mfn:#x}[{index}]")
    xen_l2 = (l3[3] & FRAME_MASK) >> 12
    entries = u64s(memory, xen_l2)
    expected = layout.pae_hypervisor_slots().entries
    for slot in range(layout.PAE_FIRST_SLOT, 512):
        assert entries[slot] == expected.get(slot, 0), f"hypervisor PAE L2 slot {slot}"


def check_invariants(booted, snapshot: dict[str, bytes]) -> None:
    Figures.invariants += 1
    domain = booted.domain
    tables = domain.pagetables
    for mfn, level in tables.typed.items():
        assert mfn < domain.nr_pages, f"typed frame {mfn:#x} (level {level}) is not RAM"
    cr3 = booted.cpu.read(CR3)
    assert cr3 >> 12 == tables.base_mfn, f"CR3 {cr3:#x} is not the validated base"
    assert tables.typed.get(tables.base_mfn) == (3 if tables.pae else 2)
    walk = mapped_frames_pae if tables.pae else mapped_frames_2level
    for frame, writable, where in walk(booted, tables.base_mfn):
        assert domain.owns_frame(frame), f"{where} maps frame {frame:#x}, not the domain's"
        assert not (writable and frame in tables.typed), \
            f"{where} maps page table {frame:#x} writable"
    for name, before in snapshot.items():
        assert hypervisor_snapshot(booted)[name] == before, f"the {name} changed"


def check_result(result) -> None:
    if result is NO_RESULT:
        return
    assert isinstance(result, int), f"result {result!r}"
    assert -4096 < result <= 0xFFFFFFFF, f"result {result:#x}"
    if result < 0:
        assert -result in XEN_ERRNOS, f"result -{-result} is not a Xen errno"


# -- the property ----------------------------------------------------------------------
def small_or(ctx, other):
    """Mostly 0 (a high half, flags), sometimes anything."""
    return st.sampled_from([0, 0, 0, 0, 1, 4, None]).flatmap(
        lambda x: other if x is None else st.just(x))


def records(ctx):
    """Structures a call may read from the scratch page: mmu_update requests (ptr =
    an entry's machine address | command, val = a PTE), mmuext_op entries, multicall
    entries, trap_info entries, or plain words."""
    v = value(ctx)
    entry = st.tuples(st.sampled_from(ctx["table_frames"]), st.integers(0, 1023),
                      st.sampled_from([0, 0, 0, 1, 2, 3])).map(
        lambda t: t[0] * PAGE + 4 * t[1] | t[2])
    pte = st.tuples(st.one_of(st.sampled_from(ctx["interesting_frames"]),
                              st.integers(0, ctx["nr_pages"] + 4)),
                    st.sampled_from([0x1, 0x3, 0x7, 0x63, 0x67, 0x23, 0x0, 0x83])).map(
        lambda t: t[0] << 12 | t[1])
    mmu_update = st.tuples(entry, small_or(ctx, st.just(1)), st.one_of(pte, v),
                           small_or(ctx, v)).map(list)
    mmuext = st.tuples(st.integers(0, 20),
                       st.one_of(st.sampled_from(ctx["interesting_frames"]), v), v).map(list)
    multicall = st.tuples(st.integers(0, 40), st.just(0xAAAAAAAA),
                          st.lists(v, min_size=6, max_size=6)).map(
        lambda t: [t[0], t[1], *t[2]])
    trap_info = st.tuples(st.integers(0, 255), st.integers(0, 255),
                          st.sampled_from([0xE019, 0xE018, 0x0, 0xE021, 0xE02B, 0x10]),
                          st.one_of(st.just(0), v)).map(
        lambda t: [t[0] | t[1] << 8 | t[2] << 16, t[3]])
    return st.one_of(mmu_update, mmuext, multicall, trap_info,
                     st.lists(v, min_size=1, max_size=8))


def specific_args(ctx, number):
    """Arguments shaped for NUMBER's handler, so the fuzzer gets past the first check."""
    v, ptr = value(ctx), pointer(ctx)
    scratch = st.sampled_from([ctx["scratch"], ctx["scratch"] + 16, ctx["scratch"] + PAGE - 8])
    pte = st.tuples(st.one_of(st.sampled_from(ctx["interesting_frames"]),
                              st.integers(0, ctx["nr_pages"] + 4)),
                    st.sampled_from([0x1, 0x3, 0x7, 0x63, 0x67, 0x0, 0x83, 0xFFF])).map(
        lambda t: t[0] << 12 | t[1])
    batch = st.tuples(st.one_of(scratch, ptr), st.integers(0, 6), st.one_of(st.just(0), ptr),
                      v, v)
    shapes = {
        14: st.tuples(st.one_of(scratch, ptr, st.sampled_from(ctx["table_addresses"])),
                      pte, small_or(ctx, v), st.integers(0, 3), v),
        1: batch, 26: batch, 13: batch,
        2: st.tuples(st.one_of(scratch, ptr), st.sampled_from([0, 1, 8, 512, 513, 14 * 512,
                                                                0xFFFFFFFF]), v, v, v),
        10: st.tuples(st.tuples(st.one_of(st.sampled_from(ctx["interesting_frames"]),
                                          st.integers(0, ctx["nr_pages"])),
                                st.integers(0, 511)).map(lambda t: t[0] * PAGE + 8 * t[1]),
                      small_or(ctx, v), v, v, v),
        0: st.tuples(st.one_of(scratch, ptr), v, v, v, v),
        23: st.tuples(v, v, v, v, v),
        # memory_op: a command (now and then with a continuation's start_extent)
        12: st.tuples(st.tuples(st.integers(0, 30), st.sampled_from([0, 0, 0, 1, 0xFFFF,
                                                                    0x3FFFFFF]))
                      .map(lambda t: t[0] | t[1] << 6), st.one_of(scratch, ptr), v, v, v),
        # grant_table_op: a command (continuation bits now and then) and a count
        20: st.tuples(st.one_of(st.integers(0, 13), st.sampled_from([1 << 12 | 2, 0xFFFF])),
                      st.one_of(scratch, ptr),
                      st.sampled_from([0, 1, 1, 1, 2, 3, 1024, 1025, 0x7FFFFFFF, 0x80000000,
                                       0xFFFFFFFF]), v, v),
        # xen_version: every XENVER_* (0-14) and beyond, into a buffer or a null handle
        17: st.tuples(st.integers(0, 16), st.one_of(scratch, ptr, st.just(0)), v, v, v),
        # event_channel_op: every EVTCHNOP_* (0-13) and beyond
        32: st.tuples(st.integers(0, 15), st.one_of(scratch, ptr), v, v, v),
        # vcpu_op: every VCPUOP_* (0-13) and beyond, on vCPUs the domain has or not
        24: st.tuples(st.integers(0, 15), st.sampled_from([0, 0, 1, 1, 2, 31, 32, 0xFFFFFFFF]),
                      st.one_of(scratch, ptr, st.just(0)), v, v),
        # set_debugreg: DR0-DR7 and beyond, breakpoints armed (R/W and LEN of each,
        # GD, I/O) or addresses; get_debugreg the same registers
        8: st.tuples(st.integers(0, 9), st.one_of(
            st.tuples(st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.sampled_from(
                [0, 1 << 13, 1 << 11, 0xD000])).map(lambda t: t[0] | t[1] << 16 | t[2]),
            v), v, v, v),
        9: st.tuples(st.integers(0, 9), v, v, v, v),
        # physdev_op: set_iopl, set_iobitmap (a bitmap pointer and a port count), others
        33: st.tuples(st.one_of(st.sampled_from([6, 7]), st.integers(0, 31)),
                      st.one_of(scratch, ptr), v, v, v),
    }
    return shapes.get(number, st.tuples(st.integers(0, 8), st.one_of(scratch, ptr), v, v, v))


IMPLEMENTED = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 13, 14, 15, 17, 18, 20, 21, 23, 24, 26, 29,
               32,
               33]
FAVOURITES = [1, 14, 26, 13, 10, 2, 0]  # the calls that change page tables or the GDT


@st.composite
def one_call(draw, ctx):
    kind = draw(st.integers(0, 7))
    number = draw(st.integers(0, 60) if kind == 0 else st.sampled_from(IMPLEMENTED)
                  if kind < 4 else st.sampled_from(FAVOURITES))
    shaped = draw(st.integers(0, 3)) > 0
    args = draw(specific_args(ctx, number) if shaped
                else st.lists(value(ctx), min_size=5, max_size=5))
    return number, list(args)


@st.composite
def scenario(draw, ctx):
    structured = draw(st.lists(records(ctx), max_size=8))
    words = [w for record in structured for w in record]
    memory = [(0, words)] if words else []
    memory += draw(st.lists(st.tuples(st.integers(0, SCRATCH_PAGES * 1024 - 1),
                                      st.lists(value(ctx), min_size=1, max_size=8)),
                            max_size=3))
    calls = draw(st.lists(one_call(ctx), min_size=1, max_size=6))
    return memory, calls


def run_scenario(booted, memory_writes, calls) -> None:
    domain = booted.domain
    scratch = booted.guest["scratch0"]
    for word, values in memory_writes:
        values = values[:SCRATCH_PAGES * 1024 - word]
        booted.write(scratch + 4 * word,
                     struct.pack(f"<{len(values)}I", *(v & 0xFFFFFFFF for v in values)))
    snapshot = hypervisor_snapshot(booted)
    check_invariants(booted, snapshot)
    for number, args in calls:
        Stats.calls += 1
        Figures.hypercalls += 1
        try:
            result = call(domain, domain.vcpu, number, tuple(args))
        except DomainCrash as crash:  # what PvSupervisor.on_interruption does
            assert crash.reason, "a domain crash with no reason"
            domain.crash(crash.reason)
            stop = booted.machine.stop
            assert stop.kind is StopKind.CRASH and crash.reason in stop.reason
            Stats.crashes += 1
            result = "crash"
        else:
            check_result(result)
        key = ("iret" if result is NO_RESULT else result if isinstance(result, str)
               else "positive" if result > 0 else str(result))
        Stats.results[key] = Stats.results.get(key, 0) + 1
        check_invariants(booted, snapshot)
        if booted.machine.stop is not None:
            return  # shut down, crashed or halted: a real vCPU would not call again


@pytest.mark.parametrize("idle_guest", [DEFAULT_NOTES, PAE_NOTES], ids=["2level", "pae"],
                         indirect=True)
def test_hypercalls_keep_the_hypervisor_whole(idle_guest, idle):
    ctx = context(idle)
    started = time.perf_counter()
    calls_before = Stats.calls

    @settings(max_examples=MAX_EXAMPLES, suppress_health_check=list(HealthCheck))
    @given(scenario(ctx))
    def fuzz(case):
        memory_writes, calls = case
        Stats.examples += 1
        run_scenario(boot(idle_guest), memory_writes, calls)

    fuzz()
    elapsed = time.perf_counter() - started
    done = Stats.calls - calls_before
    mode = "pae" if idle.domain.pagetables.pae else "2level"
    print(f"\n{mode}: {done} hypercalls in {elapsed:.1f} s ({done / elapsed:.0f}/s), "
          f"{Stats.crashes} domain crashes so far; results {sorted(Stats.results.items())}")


# -- a domain of two vCPUs ------------------------------------------------------------------
VCPU_INFO_SIZE = 64
RUNNING, OFFLINE = 0, 3
VCPUOP_INITIALISE, VCPUOP_UP = 0, 1
WRITABLE_TYPE = 7  # PGT_writable_page (xen/include/asm-x86/mm.h), pvtool's PageType


def initial_context(booted) -> bytes:
    """A vcpu_guest_context (x86-32 offsets, public/arch-x86/xen.h) that starts at the
    kernel's entry on flat ring-1 segments and the current page tables."""
    ctx = bytearray(2800)
    for offset, word in ((548, booted.guest["_start"]), (552, 0xE019), (556, 2),
                         (560, booted.guest["stack_top"]), (564, 0xE021),
                         (2716 + 12, booted.domain.pagetables.base_mfn << 12)):
        struct.pack_into("<I", ctx, offset, word)
    return bytes(ctx)


def check_vcpu_invariants(booted) -> None:
    """What holds of every vCPU whatever the calls: one runs, the down ones are
    offline, each vcpu_info is its shared_info slot or in a writable frame of the
    domain's, timers are Xen's, ports notify a vCPU the domain has, and a vCPU off
    the CPU holds a validated base."""
    domain = booted.domain
    tables, frames = domain.pagetables, domain.frames
    now = domain.events.now_ns()
    for vcpu in domain.vcpus:
        state = vcpu.runstate.state
        assert vcpu is domain.vcpu or state != RUNNING, f"vcpu {vcpu.id} runs off the CPU"
        assert vcpu.up or state == OFFLINE, f"vcpu {vcpu.id} is down but {state}"
        assert not vcpu.up or vcpu.initialised, f"vcpu {vcpu.id} is up uninitialised"
        assert min(vcpu.runstate.time) >= 0 and sum(vcpu.runstate.time) <= now
        slot = layout.VCPU0 + VCPU_INFO_SIZE * vcpu.id
        if vcpu.info != slot:
            mfn = vcpu.info >> 12
            assert domain.owns_frame(mfn) and mfn < domain.nr_pages, \
                f"vcpu {vcpu.id}'s vcpu_info at {vcpu.info:#x}"
            assert frames.type_info(mfn) & 0xF == WRITABLE_TYPE, \
                f"vcpu {vcpu.id}'s vcpu_info frame {mfn:#x} is not held writable"
            assert (vcpu.info & 0xFFF) + VCPU_INFO_SIZE <= PAGE
        assert vcpu.periodic_period == 0 or vcpu.periodic_period >= 1_000_000
        assert vcpu.periodic_period or vcpu.periodic_next is None
        assert vcpu.periodic_next in (None, vcpu.periodic_last + vcpu.periodic_period)
        if vcpu is not domain.vcpu and vcpu.initialised:
            assert tables.typed.get(vcpu.base_mfn) == (3 if tables.pae else 2), \
                f"vcpu {vcpu.id}'s base {vcpu.base_mfn:#x} is not a validated top table"
    for port, bound in domain.events.ports.items():
        assert bound.vcpu < len(domain.vcpus), f"port {port} notifies vcpu {bound.vcpu}"


@st.composite
def two_vcpu_scenario(draw, ctx):
    """vCPU 1 initialised and up (or not), then calls each made by vCPU 0 or 1."""
    memory, calls = draw(scenario(ctx))
    callers = draw(st.lists(st.integers(0, 1), min_size=len(calls), max_size=len(calls)))
    return draw(st.integers(0, 2)), memory, list(zip(callers, calls, strict=True))


def run_two_vcpu_scenario(booted, bring_up: int, memory_writes, calls) -> None:
    domain = booted.domain
    if bring_up:  # 1: initialised; 2: and up
        ctx_at = booted.guest[f"scratch{SCRATCH_PAGES - 1}"]
        booted.write(ctx_at, initial_context(booted))
        assert call(domain, domain.vcpu, 24, (VCPUOP_INITIALISE, 1, ctx_at, 0, 0)) == 0
        if bring_up == 2:
            assert call(domain, domain.vcpu, 24, (VCPUOP_UP, 1, 0, 0, 0)) == 0
    for caller, one in calls:
        vcpu = domain.vcpus[caller]
        if vcpu.up and booted.machine.stop is None:
            domain.scheduler.switch_to(vcpu)
        run_scenario(booted, memory_writes, [one])
        memory_writes = []
        check_vcpu_invariants(booted)
        if booted.machine.stop is not None:
            return


@pytest.mark.parametrize("idle_guest", [DEFAULT_NOTES, PAE_NOTES], ids=["2level", "pae"],
                         indirect=True)
def test_hypercalls_keep_a_two_vcpu_domain_whole(idle_guest, idle):
    ctx = context(idle)
    calls_before = Stats.calls

    @settings(max_examples=MAX_EXAMPLES // 2, database=None,
              suppress_health_check=list(HealthCheck))
    @given(two_vcpu_scenario(ctx))
    def fuzz(case):
        bring_up, memory_writes, calls = case
        Stats.examples += 1
        run_two_vcpu_scenario(boot(idle_guest, vcpus=2), bring_up, memory_writes, calls)

    fuzz()
    print(f"\ntwo vCPUs: {Stats.calls - calls_before} hypercalls")


# -- a guest that calls at random --------------------------------------------------------
RANDOM_CALLER = r"""
    mov eax, [seed]
    mov [state], eax
next_call:
    call xorshift
    mov edi, eax
    xor edx, edx
    mov ecx, 61
    div ecx                     /* edx: the hypercall number, 0-60 */
    cmp edx, 23                 /* iret with a random frame crashes at once: 1 in 8 */
    jne 1f
    test edi, 0x3f00
    jnz next_call
1:  mov [number], edx
    /* fill 16 words of the scratch page with random values, pointers and PTEs */
    mov ecx, 16
    mov ebx, offset scratch
2:  push ecx
    call arg_word
    mov [ebx], eax
    add ebx, 4
    pop ecx
    loop 2b
    call arg_word
    mov [args + 0], eax
    call arg_word
    mov [args + 4], eax
    call arg_word
    mov [args + 8], eax
    call arg_word
    mov [args + 12], eax
    call arg_word
    mov [args + 16], eax
    mov eax, [number]
    mov ebx, [args + 0]
    mov ecx, [args + 4]
    mov edx, [args + 8]
    mov esi, [args + 12]
    mov edi, [args + 16]
    int 0x82
    inc dword ptr [calls]
    mov esp, offset stack_top   /* a hypercall may have changed nothing but EAX */
    jmp next_call

/* EAX = the next xorshift32 value */
xorshift:
    mov eax, [state]
    mov edx, eax
    shl edx, 13
    xor eax, edx
    mov edx, eax
    shr edx, 17
    xor eax, edx
    mov edx, eax
    shl edx, 5
    xor eax, edx
    mov [state], eax
    ret

/* EAX = an argument: a small number, a scratch pointer, a PTE, anything */
arg_word:
    call xorshift
    mov edx, eax
    shr edx, 29
    and eax, 0x1fffffff
    cmp edx, 0
    je small
    cmp edx, 1
    je to_scratch
    cmp edx, 2
    je a_pte
    cmp edx, 3
    je a_frame
    cmp edx, 4
    je hv_range
    call xorshift
    ret
small:
    and eax, 7
    ret
to_scratch:
    and eax, 0xffc
    add eax, offset scratch
    ret
a_pte:
    and eax, 0xfff067           /* frames 0-4095 (owned or not), P RW US A D flags */
    ret
a_frame:
    and eax, 0x1fff
    ret
hv_range:
    and eax, 0xfffffc
    add eax, 0xfc000000
    ret
"""


RANDOM_CALLER_DATA = ("seed: .long 1\nstate: .long 0\nnumber: .long 0\ncalls: .long 0\n"
                      "args: .skip 20")


@pytest.fixture(scope="module")
def random_caller(build):
    return build(RANDOM_CALLER, bss="scratch: .skip 4096", data=RANDOM_CALLER_DATA)


@pytest.fixture(scope="module")
def random_callers(build):
    """The random caller on 2-level paging and on PAE."""
    return [build(RANDOM_CALLER, bss="scratch: .skip 4096", data=RANDOM_CALLER_DATA,
                  notes=notes) for notes in (DEFAULT_NOTES, PAE_NOTES)]


def patch_seed(path, out, seed: int, seed_offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[seed_offset:seed_offset + 4] = struct.pack("<I", seed)
    out.write_bytes(bytes(data))


CLEAN_STATUSES = {0, 71, 78, 79}
CALLER_STOPS = {StopKind.SHUTDOWN, StopKind.CRASH, StopKind.HALTED}
SEEDS = (1, 2, 3, 0xDEADBEEF, 12345, 777, 0x1234567, 99)


@pytest.mark.parametrize("vcpus", ["1", "2"])
def test_a_guest_calling_at_random_always_stops_cleanly(random_caller, tmp_path, vcpus):
    """Eight seeds at full strength (tests/profiles.py), each bounded by --max-insns
    (1.5 M), in a domain of one vCPU and of two (its vcpu_op calls aim at both): a
    shutdown, a crash with a reason, a halt or the limit; never pvtool's internal
    error (70) or a traceback."""
    from pvtool.image.elf import load_elf

    image = load_elf(random_caller.path)
    seed_addr = random_caller["seed"]
    seg = next(s for s in image.segments if s.vaddr <= seed_addr < s.vaddr + s.filesz)
    offset = seg.offset + seed_addr - seg.vaddr
    total = 0
    started = time.perf_counter()
    for seed in SEEDS[:examples(len(SEEDS))]:
        elf = tmp_path / f"random-{seed}.elf"
        patch_seed(random_caller.path, elf, seed, offset)
        summary_path = tmp_path / f"random-{seed}.json"
        done = pvtool("run", "--json", summary_path, "--max-insns", "1500000", "--timeout",
                      "20", "--vcpus", vcpus, elf, process=True, timeout=60)
        assert "Traceback" not in done.stderr, done.stderr
        assert done.status in CLEAN_STATUSES, (seed, done.status, done.stderr)
        summary = json.loads(summary_path.read_text())
        kind = summary["stop"]["kind"]
        assert summary["stop"]["reason"], summary["stop"]
        # the event callback is not "vector 256" of the trap table (seed 0x1234567)
        assert "vector 256" not in summary["stop"]["reason"], summary["stop"]
        if done.status:
            errors = [line for line in done.stderr.splitlines()
                      if line.startswith("pvtool: error:")]
            assert len(errors) == 1, done.stderr
        total += sum(summary["hypercalls"].values())
        print(f"seed {seed:#x}: {kind} ({summary['stop']['reason']}), "
              f"{sum(summary['hypercalls'].values())} hypercalls")
    elapsed = time.perf_counter() - started
    print(f"random guest: {total} hypercalls in {elapsed:.1f} s")
    assert total > 8


CALLER_SLICE = 10_000  # instructions between two checks of the invariants (~30 calls)
CALLER_LIMIT = 1_500_000  # instructions a seed may run, as the test above bounds it
# full strength: 8 seeds in each paging mode; `make fuzz`: over a million hypercalls
# (about 930 a boot)
CALLER_SEEDS = examples(8, campaign=600)
CALLER_PROGRESS = 50  # seeds between two progress lines (a campaign's figures so far)


def test_random_callers_keep_the_hypervisor_whole(random_callers):
    """The random caller booted in process, seed after seed, in both paging modes, the
    hypervisor's invariants (above) checked every CALLER_SLICE instructions and at its
    stop, which must be one a domain may reach (a shutdown, a crash with a reason, a
    halt) or the instruction limit."""
    started = time.perf_counter()
    total = 0
    for seed in range(1, CALLER_SEEDS + 1):
        for guest in random_callers:
            booted = boot(guest)
            booted.write_u32s("seed", seed)
            snapshot = hypervisor_snapshot(booted)
            for _ in range(CALLER_LIMIT // CALLER_SLICE):
                booted.slice(CALLER_SLICE)
                check_invariants(booted, snapshot)
                if booted.machine.stop is not None:
                    break
            stop = booted.machine.stop
            assert stop is None or stop.kind in CALLER_STOPS, (seed, stop)
            assert stop is None or stop.reason, (seed, stop)
            calls = sum(booted.domain.hypercall_counts.values())
            total += calls
            Figures.hypercalls += calls
        if seed % CALLER_PROGRESS == 0:
            print(f"\n{seed} seeds: {summary()}", flush=True)
    elapsed = time.perf_counter() - started
    print(f"\nrandom callers: {total} hypercalls from {2 * CALLER_SEEDS} boots in "
          f"{elapsed:.1f} s ({total / elapsed:.0f}/s)")
    assert total > CALLER_SEEDS * 100
