"""Fuzzing the 64-bit entry hypercalls (set_trap_table, stack_switch, set_callbacks,
callback_op, iret, set_segment_base): hostile arguments and guest memory against
pvtool.hv.hypercalls.call with TABLE_64, as the syscall entry runs them, on a fresh
64-bit domain per example (tests/hv/longmode.py). After every call:

- nothing escapes but DomainCrash (which the entry turns into a crash with a reason);
- the result is 0 or -errno with errno one of Xen's (iret sets RAX itself);
- the vCPU's state holds only what Xen would let in: canonical handler, callback and
  segment-base addresses, a trap table of at most 256 vectors, and a mode toggle only
  with both L4s in place;
- the hypervisor's pages (GDT, trampoline) are unchanged.

The full-strength runs (CI) make 400 examples; see tests/profiles.py.
"""

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvtool.hv.errors import DomainCrash
from pvtool.hv.hypercalls import TABLE_64, call
from pvtool.hv.hypercalls.common import NO_RESULT
from pvtool.machine.cpu import FS_BASE, GS_BASE, RSP
from pvtool.x86.paging import is_canonical
from tests.hv.longmode import GDT, KERNEL_STACK, TRAMPOLINE, LongModeDomain
from tests.profiles import examples

XEN_ERRNOS = {1, 2, 3, 13, 14, 16, 17, 19, 22, 28, 33, 38, 61, 95, 105}  # errno.h
SCRATCH = 0x150000  # guest memory both L4s map
HOSTILE = [0, 8, 0xFFF8, SCRATCH, SCRATCH + 0xFF8, 0x0000_7FFF_FFFF_FFF8,
           0x0000_8000_0000_0000, 0xFFFF_8000_0000_0000, 0xFFFF_87FF_FFFF_FFF8,
           0xFFFF_8800_0000_0000, 0xFFFF_FFFF_FFFF_FFF8, 0x400000, 0x900000]
NUMBERS = [0, 3, 4, 23, 25, 30]  # the 64-bit entry's hypercalls

word = st.one_of(st.integers(0, 16), st.sampled_from(HOSTILE),
                 st.integers(0, (1 << 64) - 1))
call_args = st.tuples(st.sampled_from(NUMBERS), st.tuples(word, word, word, word, word))
scenario = st.tuples(st.binary(min_size=256, max_size=256), st.booleans(),
                     st.lists(call_args, min_size=1, max_size=6))


def protected(dom: LongModeDomain) -> bytes:
    return dom.memory.read_phys(GDT + 0xE000, 0x40) + dom.memory.read_phys(TRAMPOLINE, 2)


def check_state(dom: LongModeDomain) -> None:
    state = dom.vcpu.long_mode
    cpu = dom.machine.cpu
    assert len(state.trap_table) <= 256
    assert all(is_canonical(t.address) for t in state.trap_table.values())
    assert all(is_canonical(c.address) for c in state.callbacks.values())
    for base in (cpu.read(FS_BASE), cpu.read(GS_BASE), state.inactive_gs_base):
        assert is_canonical(base), hex(base)


@settings(max_examples=examples(400), database=None, suppress_health_check=list(HealthCheck))
@given(scenario)
def test_entry_hypercalls_keep_the_hypervisors_invariants(case):
    memory, no_user_l4, calls = case
    dom = LongModeDomain()
    if no_user_l4:
        dom.pagetables.user_base_mfn = 0
    dom.memory.write_phys(SCRATCH, memory * 16)
    dom.memory.write_phys(KERNEL_STACK - 0x100, memory[:0x100])
    dom.machine.cpu.write(RSP, KERNEL_STACK - 0x100)
    before = protected(dom)
    for number, args in calls:
        try:
            result = call(dom, dom.vcpu, number, args, TABLE_64)
        except DomainCrash as crash:
            assert crash.reason
            break
        assert result is NO_RESULT or result == 0 or -result in XEN_ERRNOS, result
        check_state(dom)
        if dom.vcpu.long_mode.kernel_mode is False:
            assert dom.pagetables.user_base_mfn, "user mode with no user L4"
    assert protected(dom) == before


def test_iret_from_a_hostile_frame_keeps_rflags_within_xens_rules():
    dom = LongModeDomain()
    frame = struct.pack("<9Q", 1, 2, 3, 0, 0x201000, 0xE033, (1 << 64) - 1, 0x3F0000, 0xE02B)
    dom.memory.write_phys(KERNEL_STACK - 0x100, frame)
    dom.machine.cpu.write(RSP, KERNEL_STACK - 0x100)
    assert call(dom, dom.vcpu, 23, (0,) * 5, TABLE_64) is NO_RESULT
    rflags = dom.machine.cpu.read(dom.machine.cpu.width.flags)
    assert rflags & 0x3000 == 0 and rflags & 0x20000 == 0  # no IOPL, no VM
    assert rflags & 0x202 == 0x202
    assert not dom.vcpu.long_mode.kernel_mode
