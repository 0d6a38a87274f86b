"""The frame table's counts against a 64-bit domain's page tables: random sequences of
4-level operations (kernel and user bases, pins of every level, mmu_update on 8-byte
entries, update_va_mapping), after each of which every count is recomputed here from
the entries of the tables the frame table says are validated, read from guest
memory, and compared with the frame table. Refused operations must leave them exact
too, and no page table may ever be mapped writable.
"""

import struct
from collections import Counter, defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvtool.hv.frames import PINNED, VALIDATED, is_table, page_type
from pvtool.machine.cpu import CR3, GPRS64_BY_NAME
from tests.hv.harness import boot, hypercall
from tests.hv.test_frame_counts import compare_counts
from tests.hv.xenguest import HC
from tests.hv.xenguest64 import (
    ADDRESS,
    DOMID_SELF,
    NEW_BASEPTR,
    NEW_USER_BASEPTR,
    PAGE,
    RAM,
    RW,
    UNPIN,
    US,
    UVMF_INVLPG,
    VIRT_BASE,
    XEN_SLOTS,
    A,
    D,
    P,
    u64s,
)

PTE_RW, PTE_RO, UPPER = P | RW | A | D, P | A, P | RW | US | A | D
PIN = {1: 0, 2: 1, 3: 2, 4: 3}  # MMUEXT_PIN_Ln_TABLE
SI_STORE_MFN, SI_CONSOLE_MFN = 56, 72
FRAMES = 8
MAX_EXAMPLES = 60


@pytest.fixture(scope="module")
def guest(build64):
    return build64("", bss=f"frames: .skip {PAGE} * {FRAMES}\nargs: .skip {PAGE}")


def scratch(booted, index: int) -> int:
    """Scratch frame INDEX's machine address."""
    return booted.addr("frames") + index * PAGE


def table(entries: dict[int, int]) -> bytes:
    return struct.pack("<512Q", *(entries.get(i, 0) for i in range(512)))


def prepare(booted) -> None:
    """Scratch frames 0-3 an L4 (with the kernel's slot 511, so a base on it keeps the
    hypercall buffers mapped), an L3, an L2 and an L1 linked in a chain at address 0,
    the L1 mapping frame 4 writable and frame 5 read-only."""
    kernel = u64s(booted.memory.read_phys(booted.cpu.read(CR3) & ADDRESS, PAGE))[511]
    chain = {0: {511: kernel, 0: scratch(booted, 1) | UPPER},
             1: {0: scratch(booted, 2) | UPPER}, 2: {0: scratch(booted, 3) | UPPER},
             3: {0: scratch(booted, 4) | PTE_RW, 1: scratch(booted, 5) | PTE_RO}}
    for index, entries in chain.items():
        booted.memory.write_phys(scratch(booted, index), table(entries))


def frame_value(booted, index: int, flags: int) -> int:
    return 0 if index < 0 else scratch(booted, index) | flags


def mmuext(booted, cmd: int, arg: int) -> int:
    booted.write("args", struct.pack("<IIQQ", cmd, 0, arg, 0))
    return hypercall(booted, HC.mmuext_op, booted.guest["args"], 1, 0, DOMID_SELF)


def run_op(booted, op: tuple) -> None:
    kind, a, b, c = op
    frame = scratch(booted, a) // PAGE
    if kind == "base":
        mmuext(booted, NEW_BASEPTR, frame)
    elif kind == "user":
        mmuext(booted, NEW_USER_BASEPTR, frame if b else 0)
    elif kind == "pin":
        mmuext(booted, PIN[b], frame)
    elif kind == "unpin":
        mmuext(booted, UNPIN, frame)
    elif kind == "mmu":
        booted.write("args", struct.pack("<QQ", scratch(booted, a) + 8 * b,
                                         frame_value(booted, *c)))
        hypercall(booted, HC.mmu_update, booted.guest["args"], 1, 0, DOMID_SELF)
    elif kind == "uvm":
        hypercall(booted, HC.update_va_mapping, scratch(booted, a) + VIRT_BASE,
                  frame_value(booted, *c), UVMF_INVLPG)


def operations():
    frame = st.integers(0, FRAMES - 1)
    value = st.tuples(st.integers(-1, FRAMES - 1), st.sampled_from([PTE_RW, PTE_RO, UPPER]))
    index = st.sampled_from([0, 1, 2, 256, 511])
    return st.lists(st.one_of(
        st.tuples(st.just("base"), frame, st.just(0), st.just(None)),
        st.tuples(st.just("user"), frame, st.integers(0, 1), st.just(None)),
        st.tuples(st.just("pin"), frame, st.integers(1, 4), st.just(None)),
        st.tuples(st.just("unpin"), frame, st.just(0), st.just(None)),
        st.tuples(st.just("mmu"), frame, index, value),
        st.tuples(st.just("uvm"), frame, st.just(0), value),
    ), min_size=1, max_size=12)


# -- the counts, from memory ---------------------------------------------------------
def recomputed(booted, start_info: int | None = None) -> dict[str, dict]:
    """Every reference the validated tables' entries, the bases, the pins and the
    backends' writable rings hold, counted here. START_INFO is start_info's physical
    address (by default the builder's RSI, for a guest that has not run)."""
    frames, tables = booted.domain.frames, booted.domain.pagetables
    refs, types = Counter(), Counter()
    holders, writable = defaultdict(Counter), defaultdict(set)
    for mfn in range(booted.domain.nr_pages):
        info = frames.type_info(mfn)
        if not (is_table(info) and info & VALIDATED):
            continue
        level = page_type(info)
        for index, entry in enumerate(u64s(booted.memory.read_phys(mfn * PAGE, PAGE))):
            target = (entry & ADDRESS) // PAGE
            if not entry & P or level == 4 and (index in XEN_SLOTS or target == mfn):
                continue
            refs[target] += 1
            if level > 1:
                types[target] += 1
                holders[target][mfn] += 1
            elif entry & RW:
                types[target] += 1
                writable[target].add(mfn * PAGE + 8 * index)
        if info & PINNED:
            refs[mfn] += 1
            types[mfn] += 1
    si = start_info if start_info is not None else (
        booted.cpu.read(GPRS64_BY_NAME["rsi"]) - VIRT_BASE)  # the guest has not run
    rings = [struct.unpack("<Q", booted.memory.read_phys(si + field, 8))[0]
             for field in (SI_CONSOLE_MFN, SI_STORE_MFN)]
    roots = [tables.base_mfn, *rings] + ([tables.user_base_mfn] if tables.user_base_mfn else [])
    for mfn in roots:
        refs[mfn] += 1
        types[mfn] += 1
    return {"refs": refs, "types": types, "holders": holders, "writable": writable}


def check_counts(booted) -> None:
    compare_counts(booted, recomputed(booted))


def test_the_counts_are_what_the_4_level_tables_hold_after_any_sequence(guest):
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(operations())
    def sequence(ops):
        booted = boot(guest, ram=RAM)
        prepare(booted)
        check_counts(booted)
        for op in ops:
            run_op(booted, op)
            check_counts(booted)

    sequence()
