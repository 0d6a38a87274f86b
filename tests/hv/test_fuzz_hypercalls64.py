"""Hypercall fuzzing on a 64-bit domain: test_fuzz_hypercalls.py's invariants, with the
hypercalls made by a 64-bit guest through its hypercall page (`call hypercall_page +
32 * nr`, the page's `syscall` into pvtool's 64-bit entry), as a 64-bit Linux makes
them.

Hypothesis draws each example: the contents of the guest's scratch pages (mmu_update
requests, mmuext_op entries, multicall entries, trap_info, plain words) and a short
sequence of hypercalls (numbers 0-60 but iret, arguments shaped for their handler or
anything: frames the domain owns or not, its page tables' entries, PTEs, scratch
pointers, Xen's range, non-canonical addresses). The guest (tests/hv/xenguest64.py's
harness) reads the calls from its table and makes them one at a time, waiting after
each until the test lets it go on, so that after EVERY call:

- nothing escapes: no Python exception leaves the run (a hook's would), and a run
  that stops is a shutdown or a domain crash with a reason;
- the call's RAX is 0, a positive value, or -errno with errno one of Xen's;
- the frame table's counts are those recomputed from the validated tables in guest
  memory (test_frame_counts64.py's recount), and no page table is mapped writable;
- every present entry of the kernel's and the user's hierarchy maps a frame the
  domain may map, Xen's L4 slots hold what the hypervisor put there, and CR3 is the
  base of the vCPU's mode;
- the hypervisor's own pages are unchanged: its GDT entries, the trampoline, the
  tables that map Xen's slots.

iret (23) is left to test_fuzz_entry64.py, which fuzzes it from a frame it controls:
here a random frame would end the example at its first call.
"""

from __future__ import annotations

import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvtool.hv import layout, layout64
from pvtool.machine.cpu import CR3
from tests.hv.harness import boot
from tests.hv.test_frame_counts import compare_counts
from tests.hv.test_frame_counts64 import recomputed
from tests.hv.xenguest64 import ADDRESS, PAGE, RAM, VIRT_BASE, XEN_SLOTS, P, u64s
from tests.profiles import examples

XEN_ERRNOS = {1, 2, 3, 13, 14, 16, 17, 19, 22, 28, 33, 38, 61, 95, 105}  # errno.h
SCRATCH_PAGES = 4
MAX_CALLS = 6
CALL_BYTES = 48  # number, rdi, rsi, rdx, r10, r8
PS = 0x80
MAX_EXAMPLES = examples(200)  # 45 s at full strength (CI), 5 s on a developer's machine
SLICE = 2_000
SLICES_PER_CALL = 100  # a call and the spin after it take a few hundred instructions
IRET = 23
WORD = (1 << 64) - 1  # a drawn sum (an address plus an offset) may pass 2^64: it wraps

# The guest: the calls at `calls`, `count` of them; after each, RAX at `result`, one
# more in `index`, then a spin until the test writes `go`.
CALLER = r"""
next_call:
    mov eax, dword ptr [rip + index]
    cmp eax, dword ptr [rip + count]
    jae all_made
    imul ebx, eax, 48
    lea rcx, [rip + calls]
    add rbx, rcx
    mov rax, [rbx]
    mov rdi, [rbx + 8]
    mov rsi, [rbx + 16]
    mov rdx, [rbx + 24]
    mov r10, [rbx + 32]
    mov r8, [rbx + 40]
    shl rax, 5
    lea rcx, [rip + hypercall_page]
    add rax, rcx
    call rax
    mov [rip + result], rax
    inc dword ptr [rip + index]
    lea rsp, [rip + stack_top]
wait_for_go:
    mov eax, dword ptr [rip + go]
    cmp eax, dword ptr [rip + index]
    jb wait_for_go
    jmp next_call
all_made:
"""
DATA = f"""
index:  .long 0
count:  .long 0
go:     .long 0
        .balign 8
result: .quad 0
calls:  .skip {MAX_CALLS * CALL_BYTES}
"""
BSS = f"scratch: .skip {SCRATCH_PAGES} * 4096"


@pytest.fixture(scope="module")
def caller(build64):
    return build64(CALLER, data=DATA, bss=BSS)


# -- what the domain looks like -------------------------------------------------------
def context(booted) -> dict:
    domain = booted.domain
    nr = domain.nr_pages
    tables = sorted(mfn for mfn in range(nr) if domain.frames.type_info(mfn) & 0xF)
    scratch = booted.guest["scratch"]
    return {
        "scratch": scratch, "nr_pages": nr, "table_frames": tables,
        "scratch_frame": booted.addr("scratch") // PAGE,
        "frames": tables + [booted.addr("scratch") // PAGE, nr - 1, nr, nr + 1, 0,
                            layout64.M2P_FRAMES // PAGE, layout.GDT // PAGE],
        "pointers": [scratch, scratch + PAGE - 8, scratch + SCRATCH_PAGES * PAGE - 8,
                     VIRT_BASE, booted.guest["calls"], 0, 8, layout64.M2P, layout64.GDT,
                     layout64.TRAMPOLINE, 0xFFFF_8000_0000_0000, 0x0000_8000_0000_0000,
                     0xFFFF_FFFF_FFFF_FFF8, VIRT_BASE + RAM, VIRT_BASE + RAM - 8],
    }


def frame(ctx):
    return st.one_of(st.sampled_from(ctx["frames"]), st.integers(0, ctx["nr_pages"] + 16))


def pte(ctx):
    flags = st.sampled_from([0x1, 0x3, 0x5, 0x7, 0x23, 0x63, 0x67, 0x0, 0x83, 0xFFF,
                             0x27 | 1 << 63, 0x7 | 1 << 52])
    return st.tuples(frame(ctx), flags).map(lambda t: t[0] << 12 | t[1])


def entry_address(ctx):
    """A page-table entry's machine address, with mmu_update's command in its low bits."""
    return st.tuples(st.sampled_from(ctx["table_frames"] + [ctx["scratch_frame"]]),
                     st.integers(0, 511), st.sampled_from([0, 0, 0, 1, 2, 3])).map(
        lambda t: t[0] * PAGE + 8 * t[1] | t[2])


def pointer(ctx):
    scratch = ctx["scratch"]
    return st.one_of(st.integers(0, SCRATCH_PAGES * PAGE // 8 - 1).map(lambda i: scratch + 8 * i),
                     st.sampled_from(ctx["pointers"]), st.integers(0, (1 << 64) - 1))


def word(ctx):
    return st.one_of(st.integers(0, 8), frame(ctx), pte(ctx), entry_address(ctx),
                     pointer(ctx), st.sampled_from([0x7FF0, 0xE033, 0xE02B, 1 << 63]),
                     st.integers(0, (1 << 64) - 1))


def records(ctx):
    """Structures a call may read from the scratch pages, as 64-bit words."""
    w = word(ctx)
    mmu_update = st.tuples(entry_address(ctx), st.one_of(pte(ctx), w)).map(list)
    mmuext = st.tuples(st.integers(0, 20), st.one_of(frame(ctx), w), w).map(list)
    multicall = st.tuples(st.integers(0, 40), st.just(0xAAAA),
                          st.lists(w, min_size=6, max_size=6)).map(lambda t: [t[0], t[1], *t[2]])
    trap_info = st.tuples(st.integers(0, 255), st.integers(0, 3),
                          st.sampled_from([0xE033, 0xE030, 0, 0x10]), st.one_of(pointer(ctx), w)
                          ).map(lambda t: [t[0] | t[1] << 8 | t[2] << 16, t[3]])
    return st.one_of(mmu_update, mmuext, multicall, trap_info, st.lists(w, min_size=1, max_size=8))


def shaped_args(ctx, number):
    """Arguments for NUMBER's handler (TABLE_64's), so the fuzzer gets past its first check."""
    w, ptr = word(ctx), pointer(ctx)
    scratch = st.sampled_from([ctx["scratch"], ctx["scratch"] + 16, ctx["scratch"] + PAGE])
    batch = st.tuples(st.one_of(scratch, ptr), st.integers(0, 6), st.one_of(st.just(0), ptr),
                      st.sampled_from([0x7FF0, 0, 1]), w)
    shapes = {
        1: batch, 26: batch, 13: batch,
        14: st.tuples(st.one_of(st.integers(0, 64).map(lambda i: VIRT_BASE + i * PAGE),
                                st.sampled_from(ctx["pointers"])),
                      pte(ctx), st.integers(0, 3), w, w),
        0: st.tuples(st.one_of(scratch, ptr, st.just(0)), w, w, w, w),
        2: st.tuples(st.one_of(scratch, ptr), st.sampled_from([0, 1, 16, 512, 513, 1 << 32]),
                     w, w, w),
        10: st.tuples(st.tuples(frame(ctx), st.integers(0, 511)).map(
            lambda t: t[0] * PAGE + 8 * t[1]), w, w, w, w),
        3: st.tuples(st.sampled_from([0xE02B, 0, 0x10]), ptr, w, w, w),
        25: st.tuples(st.integers(0, 4), ptr, w, w, w),
        30: st.tuples(st.integers(0, 2), st.one_of(scratch, ptr), w, w, w),
        12: st.tuples(st.integers(0, 30), st.one_of(scratch, ptr), w, w, w),
        17: st.tuples(st.integers(0, 16), st.one_of(scratch, ptr, st.just(0)), w, w, w),
        20: st.tuples(st.integers(0, 13), st.one_of(scratch, ptr),
                      st.sampled_from([0, 1, 2, 1024, 1 << 31, (1 << 64) - 1]), w, w),
        32: st.tuples(st.integers(0, 15), st.one_of(scratch, ptr), w, w, w),
        29: st.tuples(st.integers(0, 4), st.one_of(scratch, ptr), w, w, w),
        # vcpu_op: every VCPUOP_* (0-13) and beyond, on the vCPU or past the domain's
        24: st.tuples(st.integers(0, 14), st.integers(0, 2), st.one_of(scratch, ptr), w, w),
    }
    return shapes.get(number, st.tuples(st.integers(0, 8), st.one_of(scratch, ptr), w, w, w))


NUMBERS = [n for n in range(61) if n != IRET]
FAVOURITES = [1, 14, 26, 13, 10, 2, 0, 12]  # page tables, descriptors, memory


@st.composite
def one_call(draw, ctx):
    number = draw(st.one_of(st.sampled_from(NUMBERS), st.sampled_from(FAVOURITES)))
    if draw(st.integers(0, 3)):
        args = draw(shaped_args(ctx, number))
    else:
        args = draw(st.lists(word(ctx), min_size=5, max_size=5))
    return number, list(args)


@st.composite
def scenario(draw, ctx):
    words = [w for record in draw(st.lists(records(ctx), max_size=8)) for w in record]
    writes = [(0, words)] if words else []
    writes += draw(st.lists(st.tuples(st.integers(0, SCRATCH_PAGES * PAGE // 8 - 1),
                                      st.lists(word(ctx), min_size=1, max_size=8)),
                            max_size=3))
    return writes, draw(st.lists(one_call(ctx), min_size=1, max_size=MAX_CALLS))


# -- the invariants -------------------------------------------------------------------
def hypervisor_snapshot(booted) -> dict[str, bytes]:
    memory = booted.memory
    gdt = b"".join(memory.read_phys(layout.GDT + 8 * index, 8)
                   for index in sorted(layout.reserved_gdt_entries()))
    tables = layout64.M2P_L3
    return {"reserved GDT entries": gdt,
            "trampoline": memory.read_phys(layout.TRAMPOLINE, PAGE),
            "tables of Xen's slots": memory.read_phys(tables, layout64.PRIVATE_L1 + PAGE - tables)}


def check_hierarchy(booted, l4_mfn: int, xen_slots: dict[int, int]) -> None:
    """Every present entry under the L4 at L4_MFN maps what the domain may map; its
    Xen slots are the hypervisor's; no superpage."""
    domain, memory = booted.domain, booted.memory

    def walk(mfn: int, level: int, where: str) -> None:
        for index, entry in enumerate(u64s(memory.read_phys(mfn * PAGE, PAGE))):
            if not entry & P or level == 4 and index in XEN_SLOTS:
                continue
            target = (entry & ADDRESS) // PAGE
            at = f"{where}[{index}]"
            assert domain.owns_frame(target), f"{at} = {entry:#x}: not the domain's frame"
            if level > 1:
                assert not entry & PS, f"{at} = {entry:#x}: a superpage"
                if level == 4 and target == mfn:
                    continue  # a linear self-map: the L4 itself, read as a table
                walk(target, level - 1, f"{at} -> {target:#x}")

    l4 = u64s(memory.read_phys(l4_mfn * PAGE, PAGE))
    for slot, value in xen_slots.items():
        assert l4[slot] == value, f"L4 {l4_mfn:#x} Xen slot {slot} = {l4[slot]:#x}"
    walk(l4_mfn, 4, f"L4 {l4_mfn:#x}")


def check_invariants(booted, start_info: int, snapshot: dict, xen_slots: dict) -> None:
    domain = booted.domain
    tables = domain.pagetables
    compare_counts(booted, recomputed(booted, start_info))
    kernel = domain.vcpu.long_mode.kernel_mode
    base = tables.base_mfn if kernel else tables.user_base_mfn
    assert booted.cpu.read(CR3) >> 12 == base, "CR3 is not the base of the vCPU's mode"
    for l4 in {tables.base_mfn, tables.user_base_mfn} - {0}:
        check_hierarchy(booted, l4, xen_slots)
    assert hypervisor_snapshot(booted) == snapshot, "the hypervisor's pages changed"


def check_result(booted, number: int) -> None:
    result = struct.unpack("<q", booted.memory.read_phys(booted.addr("result"), 8))[0]
    assert result >= 0 or -result in XEN_ERRNOS, f"result {result}: not a Xen errno"
    key = f"{number}: " + ("positive" if result > 0 else str(result))
    Stats.results[key] = Stats.results.get(key, 0) + 1


def check_stop(booted) -> None:
    stop = booted.machine.stop
    assert stop.kind.value in ("shutdown", "crash"), stop
    assert stop.reason, stop


class Stats:
    calls = crashes = shutdowns = unfinished = 0
    results: dict[str, int] = {}


def run_scenario(caller, writes, calls) -> None:
    booted = boot(caller, ram=RAM)
    start_info = booted.cpu.read(booted.cpu.width.gprs["rsi"]) - VIRT_BASE
    for offset, values in writes:
        values = values[:SCRATCH_PAGES * PAGE // 8 - offset]
        booted.write(booted.addr("scratch") + 8 * offset,
                     struct.pack(f"<{len(values)}Q", *(v & WORD for v in values)))
    table = b"".join(struct.pack("<6Q", number, *(a & WORD for a in args))
                     for number, args in calls)
    booted.write("calls", table)
    booted.write_u32s("count", len(calls))
    snapshot = hypervisor_snapshot(booted)
    base = u64s(booted.memory.read_phys(booted.domain.pagetables.base_mfn * PAGE, PAGE))
    xen_slots = {slot: base[slot] for slot in XEN_SLOTS}
    check_invariants(booted, start_info, snapshot, xen_slots)
    for made in range(1, len(calls) + 1):
        for _ in range(SLICES_PER_CALL):
            if booted.u32("index") >= made or booted.machine.stop is not None:
                break
            booted.slice(SLICE)
        if booted.machine.stop is not None:
            check_stop(booted)
            Stats.crashes += booted.machine.stop.kind.value == "crash"
            Stats.shutdowns += booted.machine.stop.kind.value == "shutdown"
            check_invariants(booted, start_info, snapshot, xen_slots)
            return
        if booted.u32("index") != made:
            # blocked (sched_op), or its own page tables remapped the guest's counter
            # away from the frame read here: the guest's doing; the hypervisor's
            # invariants must hold all the same
            Stats.unfinished += 1
            check_invariants(booted, start_info, snapshot, xen_slots)
            return
        Stats.calls += 1
        check_result(booted, calls[made - 1][0])
        check_invariants(booted, start_info, snapshot, xen_slots)
        booted.write_u32s("go", made)


def test_hypercalls_through_the_page_keep_the_hypervisor_whole(caller):
    ctx = context(boot(caller, ram=RAM))
    started = time.perf_counter()

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(scenario(ctx))
    def fuzz(case):
        run_scenario(caller, *case)

    fuzz()
    elapsed = time.perf_counter() - started
    print(f"\n64-bit: {Stats.calls} hypercalls returned in {elapsed:.1f} s, "
          f"{Stats.crashes} domain crashes, {Stats.shutdowns} shutdowns, "
          f"{Stats.unfinished} calls not back; results by "
          f"number {sorted(Stats.results.items())}")
    assert Stats.calls > 0


@pytest.mark.parametrize(("calls", "kind"), [
    # sched_op(SCHEDOP_shutdown, &poweroff): the scratch page's first word is 0
    ([(29, [2, None, 0, 0, 0])], "shutdown"),
    # update_va_mapping of the guest's own text to nothing, the TLB entry dropped:
    # its next fetch faults, with no handler registered
    ([(14, [VIRT_BASE + 0x100000, 0, 2, 0, 0])], "crash"),
], ids=["shutdown", "crash"])
def test_a_call_that_ends_the_domain_is_checked_too(caller, calls, kind):
    """The fuzzer's stops, made on purpose: the invariants hold after them as well."""
    scratch = caller["scratch"]
    calls = [(number, [scratch if a is None else a for a in args]) for number, args in calls]
    before = (Stats.shutdowns, Stats.crashes)
    run_scenario(caller, [], calls)
    assert (Stats.shutdowns, Stats.crashes) == (
        before[0] + (kind == "shutdown"), before[1] + (kind == "crash"))


def test_update_descriptor_takes_a_64_bit_guests_address_and_descriptor_whole(caller):
    """Found by the fuzzer: a 64-bit guest's update_descriptor(ma, desc) was read as the
    32-bit (ma_lo, ma_hi, desc_lo, desc_hi), and a descriptor in the last two 64-bit
    registers overflowed the 8-byte store, a Python error out of the syscall hook."""
    from pvtool.hv.hypercalls import TABLE_64, call

    booted = boot(caller, ram=RAM)
    domain = booted.domain
    address = booted.addr("scratch")
    data = 0x00CF_F200_0000_FFFF  # a flat ring-3 data segment, present
    assert call(domain, domain.vcpu, 10, (address, data, 0, 0, 0), TABLE_64) == 0
    assert booted.memory.read_phys(address, 8) == struct.pack("<Q", data)
    assert call(domain, domain.vcpu, 10, (address + 4, data, 0, 0, 0), TABLE_64) == -22
