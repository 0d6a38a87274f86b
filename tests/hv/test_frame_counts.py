"""The frame table's counts against the page tables themselves: random sequences of
page-table operations on a 2-level domain (bases, pins, mmu_update,
update_va_mapping, a kernel's stores, writes that take write access back), after
each of which every count is recomputed here from the entries of the tables the
frame table says are validated, read from guest memory, and compared with the frame
table: general references, type references, the tables linking each table and the
entries mapping each frame writable. Refused operations must leave them all exact too.
"""

import struct
from collections import Counter, defaultdict
from contextlib import suppress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvtool.hv.errors import HypercallError
from pvtool.hv.frames import PINNED, VALIDATED, is_table, page_type, type_count
from pvtool.hv.hypercalls import call
from pvtool.machine.cpu import ESI
from pvtool.machine.memory import PageFault
from tests.hv.harness import RW, US, P, boot
from tests.hv.xenguest import DOMID_SELF, HC

PAGE = 4096
A, D = 0x20, 0x40
PTE_RW, PTE_RO, PDE_RW = P | RW | A | D, P | A, P | RW | US | A | D
HYPERVISOR_FIRST_SLOT = 1008  # 0xFC000000 >> 22: the hypervisor's L2 slots of 2-level
SI_STORE_MFN, SI_CONSOLE_MFN, SI_PT_BASE = 44, 52, 60
NEW_BASEPTR, PIN_L1, PIN_L2, UNPIN = 5, 0, 1, 4
FRAMES = 8  # scratch frames: candidate tables and data
MAX_EXAMPLES = 60


@pytest.fixture(scope="module")
def guest(build):
    return build("", bss=f"frames: .skip {PAGE} * {FRAMES}\nbuf: .skip {PAGE}")


def scratch(booted, index: int) -> int:
    return booted.guest["frames"] + index * PAGE


def u32s(booted, address: int) -> tuple[int, ...]:
    return struct.unpack("<1024I", booted.memory.read_phys(address, PAGE))


def table(entries: dict[int, int]) -> bytes:
    return struct.pack("<1024I", *(entries.get(i, 0) for i in range(1024)))


def prepare(booted) -> None:
    """Scratch frame 0 a directory whose slot 0 is an identity L1 (frame 1) of the
    first 4 MiB and slot 2 an L1 (frame 2) mapping frames 3 and 0 at 8 MiB: a base
    to switch to, whose tables map themselves writable."""
    booted.write(scratch(booted, 1), table({i: i * PAGE | PTE_RW for i in range(1024)}))
    booted.write(scratch(booted, 2), table({0: scratch(booted, 3) | PTE_RW,
                                            1: scratch(booted, 0) | PTE_RW}))
    booted.write(scratch(booted, 0), table({0: scratch(booted, 1) | PDE_RW,
                                            2: scratch(booted, 2) | PDE_RW}))


# -- the operations ------------------------------------------------------------------
def frame_value(booted, index: int, flags: int) -> int:
    return 0 if index < 0 else scratch(booted, index) | flags


def hypercall(booted, number, *args):
    domain = booted.domain
    return call(domain, domain.vcpu, number, tuple(args) + (0,) * (5 - len(args)))


def mmuext(booted, cmd: int, arg: int):
    booted.write("buf", cmd.to_bytes(4, "little") + arg.to_bytes(4, "little") + bytes(4))
    return hypercall(booted, HC.mmuext_op, booted.guest["buf"], 1, 0, DOMID_SELF)


def run_op(booted, op: tuple) -> None:
    kind, a, b, c = op
    tables = booted.domain.pagetables
    if kind == "base":
        mmuext(booted, NEW_BASEPTR, scratch(booted, a) // PAGE)
    elif kind in ("pin", "unpin"):
        cmd = UNPIN if kind == "unpin" else (PIN_L1, PIN_L2)[b]
        mmuext(booted, cmd, scratch(booted, a) // PAGE)
    elif kind == "mmu":
        booted.write("buf", (scratch(booted, a) + 4 * b).to_bytes(8, "little")
                     + frame_value(booted, *c).to_bytes(8, "little"))
        hypercall(booted, HC.mmu_update, booted.guest["buf"], 1, 0, DOMID_SELF)
    elif kind == "uvm":
        hypercall(booted, HC.update_va_mapping, scratch(booted, a), frame_value(booted, *c),
                  0, 2)
    elif kind == "store" and tables.in_use(scratch(booted, a) // PAGE):
        with suppress(HypercallError):  # what ptwr does with a kernel's store
            tables.write_entry(scratch(booted, a) + 4 * b, frame_value(booted, *c))
    elif kind == "write" and not tables.in_use(scratch(booted, a) // PAGE):
        with suppress(PageFault):  # a write fault where the base maps the frame
            tables.give_back_write_access(booted.memory.walk(scratch(booted, a)).pte_addr)


def operations():
    frame = st.integers(0, FRAMES - 1)
    value = st.tuples(st.integers(-1, FRAMES - 1), st.sampled_from([PTE_RW, PTE_RO, PDE_RW]))
    index = st.sampled_from([0, 1, 2, 3, 5, HYPERVISOR_FIRST_SLOT + 1])
    return st.lists(st.one_of(
        st.tuples(st.just("base"), frame, st.just(0), st.just(None)),
        st.tuples(st.just("pin"), frame, st.integers(0, 1), st.just(None)),
        st.tuples(st.just("unpin"), frame, st.just(0), st.just(None)),
        st.tuples(st.just("mmu"), frame, index, value),
        st.tuples(st.just("uvm"), frame, st.just(0), value),
        st.tuples(st.just("store"), frame, index, value),
        st.tuples(st.just("write"), frame, st.just(0), st.just(None)),
    ), min_size=1, max_size=10)


# -- the counts, from memory ---------------------------------------------------------
def recomputed(booted) -> dict[str, dict]:
    """Every reference the validated tables' entries, the base, the pins and the
    hypervisor's own writable mappings hold, counted here."""
    frames, tables = booted.domain.frames, booted.domain.pagetables
    refs, types = Counter(), Counter()
    holders, writable = defaultdict(Counter), defaultdict(set)
    for mfn in range(booted.domain.nr_pages):
        info = frames.type_info(mfn)
        if not (is_table(info) and info & VALIDATED):
            continue
        for index, entry in enumerate(u32s(booted, mfn * PAGE)):
            target = entry >> 12
            if not entry & P or page_type(info) == 2 and (
                    index >= HYPERVISOR_FIRST_SLOT or target == mfn):
                continue
            refs[target] += 1
            if page_type(info) == 2:
                types[target] += 1
                holders[target][mfn] += 1
            elif entry & RW:
                types[target] += 1
                writable[target].add(mfn * PAGE + 4 * index)
        if info & PINNED:
            refs[mfn] += 1
            types[mfn] += 1
    start_info = booted.cpu.read(ESI)
    rings = [booted.u32(start_info + field) for field in (SI_CONSOLE_MFN, SI_STORE_MFN)]
    for mfn in (tables.base_mfn, *rings):  # the console's and the store's backends hold theirs
        refs[mfn] += 1
        types[mfn] += 1
    return {"refs": refs, "types": types, "holders": holders, "writable": writable}


def check_counts(booted) -> None:
    compare_counts(booted, recomputed(booted))


def compare_counts(booted, want: dict[str, dict]) -> None:
    """The frame table against WANT, the counts recomputed from memory, frame by frame."""
    frames = booted.domain.frames
    for mfn in range(booted.domain.nr_pages):
        info = frames.type_info(mfn)
        assert (frames.refs(mfn), type_count(info)) == (want["refs"][mfn], want["types"][mfn]), \
            f"frame {mfn:#x}: (references, type references)"
        assert frames.holders(mfn) == want["holders"].get(mfn, {}), f"frame {mfn:#x}"
        writable = want["writable"].get(mfn, set())
        assert set(frames.writable_at(mfn)) == writable, f"frame {mfn:#x}"
        assert not (writable and is_table(info)), f"page table {mfn:#x} mapped writable"


def test_the_counts_are_what_the_tables_hold_after_any_sequence(guest):
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(operations())
    def sequence(ops):
        booted = boot(guest)
        prepare(booted)
        check_counts(booted)
        for op in ops:
            run_op(booted, op)
            check_counts(booted)

    sequence()
