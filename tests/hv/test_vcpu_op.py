"""HYPERVISOR_vcpu_op (24) as Xen 4.19 answers a 32-bit PV guest (xen/common/domain.c
common_vcpu_op, xen/arch/x86/domain.c arch_do_vcpu_op and arch_set_info_guest), and
event channels across two vCPUs. Numbers and layouts are typed from public/vcpu.h,
event_channel.h and arch-x86/xen.h (the 32-bit vcpu_guest_context, gcc -m32)."""

import struct

import pytest

from tests.hv.harness import boot, hypercall
from tests.hv.xenguest import (
    DOMID_SELF,
    EFAULT,
    EINVAL,
    ENOSYS,
    FLAT_RING1_CS,
    FLAT_RING1_DS,
    HC,
    neg,
)

VCPU_OP = 24
(INITIALISE, UP, DOWN, IS_UP, GET_RUNSTATE_INFO, REGISTER_RUNSTATE_MEMORY_AREA,
 SET_PERIODIC_TIMER, STOP_PERIODIC_TIMER, SET_SINGLESHOT_TIMER, STOP_SINGLESHOT_TIMER,
 REGISTER_VCPU_INFO, SEND_NMI, GET_PHYSID, REGISTER_VCPU_TIME_MEMORY_AREA) = range(14)
ENOENT, ENXIO, EACCES, EBUSY, EEXIST, ETIME = 2, 6, 13, 16, 17, 62
RUNNING, RUNNABLE, BLOCKED, OFFLINE = 0, 1, 2, 3
SSHOTTMR_FUTURE = 1
SCHEDOP_POLL = 3
BIND_VIRQ, SEND, BIND_IPI, BIND_VCPU, ALLOC_UNBOUND = 1, 4, 7, 8, 6
VIRQ_TIMER, VIRQ_CONSOLE = 0, 2
SHARED_INFO = 0xFC410000
VCPU_INFO_SIZE = 64
EVTCHN_PENDING = SHARED_INFO + 2048
HYPERVISOR = 0xFC000000  # where Xen's range starts for a 2-level guest

SCRATCH = r"""
    .balign 4096
buf:    .skip 4096
info_page: .skip 4096
"""


@pytest.fixture
def two(idle_guest):
    """The idle guest as a domain of two vCPUs; vCPU 0 runs, vCPU 1 is down."""
    return boot(idle_guest, vcpus=2)


def vcpu_op(booted, cmd: int, vcpu: int, data: bytes | None = None, arg: int | None = None):
    if data is not None:
        booted.write("buf", data)
        arg = booted.guest["buf"]
    return hypercall(booted, VCPU_OP, cmd, vcpu, arg or 0)


def u32(booted, address: int) -> int:
    return struct.unpack("<I", booted.memory.read_phys(address, 4))[0]


def context(booted, **fields) -> bytes:
    """A vcpu_guest_context that starts at FIELDS' eip on ring-1 flat segments and the
    domain's current page tables; FIELDS override any word by offset name."""
    ctx = bytearray(2800)
    values = {"eip": 0x100000, "cs": FLAT_RING1_CS, "eflags": 2, "esp": 0x200000,
              "ss": FLAT_RING1_DS, "ds": FLAT_RING1_DS, "es": FLAT_RING1_DS,
              "cr3": booted.domain.pagetables.base_mfn << 12, **fields}
    offsets = {"eip": 548, "cs": 552, "eflags": 556, "esp": 560, "ss": 564, "es": 568,
               "ds": 572, "ldt_ents": 2636, "gdt_frames": 2640, "gdt_ents": 2704, "kernel_ss": 2708,
               "kernel_sp": 2712, "cr3": 2716 + 12, "event_eip": 2784}
    for name, value in values.items():
        struct.pack_into("<I", ctx, offsets[name], value)
    return bytes(ctx)


def bring_up_vcpu1(booted) -> None:
    assert vcpu_op(booted, INITIALISE, 1, context(booted)) == 0
    assert vcpu_op(booted, UP, 1) == 0


# -- finding the vCPU --------------------------------------------------------------
@pytest.mark.parametrize("cmd", [IS_UP, INITIALISE, 14, 0xFFFF])
@pytest.mark.parametrize("vcpu", [2, 32, 0xFFFFFFFF])
def test_a_vcpu_beyond_the_domains_is_enoent_whatever_the_command(two, cmd, vcpu):
    assert vcpu_op(two, cmd, vcpu) == neg(ENOENT)


@pytest.mark.parametrize("cmd", [14, 15, 99])
def test_a_command_vcpu_h_does_not_define_is_enosys(two, cmd):
    assert vcpu_op(two, cmd, 0) == neg(ENOSYS)


# -- up, down, initialise ------------------------------------------------------------
def test_vcpu_0_is_up_and_the_others_start_down(two):
    assert vcpu_op(two, IS_UP, 0) == 1
    assert vcpu_op(two, IS_UP, 1) == 0


def test_up_before_initialise_is_einval(two):
    assert vcpu_op(two, UP, 1) == neg(EINVAL)
    assert vcpu_op(two, IS_UP, 1) == 0


def test_initialise_then_up_brings_a_vcpu_up_runnable(two):
    assert vcpu_op(two, INITIALISE, 1, context(two)) == 0
    assert vcpu_op(two, IS_UP, 1) == 0  # initialised, still down
    assert vcpu_op(two, UP, 1) == 0
    assert vcpu_op(two, IS_UP, 1) == 1
    assert two.domain.vcpus[1].runstate.state == RUNNABLE
    assert vcpu_op(two, UP, 1) == 0  # up again: nothing changes


def test_initialising_an_initialised_vcpu_is_eexist(two):
    assert vcpu_op(two, INITIALISE, 0, context(two)) == neg(EEXIST)
    assert vcpu_op(two, INITIALISE, 1, context(two)) == 0
    assert vcpu_op(two, INITIALISE, 1, context(two)) == neg(EEXIST)


def test_initialise_from_an_unreadable_context_is_efault(two):
    assert vcpu_op(two, INITIALISE, 1, arg=HYPERVISOR) == neg(EFAULT)
    assert vcpu_op(two, INITIALISE, 1, arg=0x7FF000) == neg(EFAULT)  # unmapped


@pytest.mark.parametrize("fields", [
    {"ldt_ents": 8193},  # more than an LDT holds
    {"cs": 0xE02B},  # a ring-3 code segment
    {"ss": FLAT_RING1_CS},  # not a data segment
    {"ds": 0xE019},
    {"cr3": 0xFFFFF000},  # a frame the domain does not own
], ids=["ldt", "cs", "ss", "ds", "cr3"])
def test_initialise_refuses_a_context_arch_set_info_guest_would(two, fields):
    assert vcpu_op(two, INITIALISE, 1, context(two, **fields)) == neg(EINVAL)
    assert not two.domain.vcpus[1].initialised
    assert vcpu_op(two, INITIALISE, 1, context(two)) == 0


def test_initialise_validates_and_holds_the_vcpus_own_page_table_base(two):
    tables = two.domain.pagetables
    base = tables.base_mfn
    before = two.domain.frames.type_info(base)
    assert vcpu_op(two, INITIALISE, 1, context(two)) == 0
    assert two.domain.frames.type_info(base) - before == 1 << 8  # one more type reference
    assert two.domain.vcpus[1].base_mfn == base


def test_initialise_fixes_ring0_selectors_forces_if_and_virtualises_iopl(two):
    assert vcpu_op(two, INITIALISE, 1, context(
        two, cs=FLAT_RING1_CS & ~3, ss=FLAT_RING1_DS & ~3, eflags=0x3002,
        kernel_ss=FLAT_RING1_DS & ~3, kernel_sp=0x1234)) == 0
    vcpu1 = two.domain.vcpus[1]
    start = vcpu1.start_state.keywords  # what the first run loads (hv/vcpu_context.py)
    assert (start["cs"], start["ss"]) == (FLAT_RING1_CS, FLAT_RING1_DS)
    assert start["eflags"] == 0x202  # IF set, IOPL cleared...
    assert vcpu1.iopl == 3  # ...and virtualised
    assert (vcpu1.kernel_ss, vcpu1.kernel_sp) == (FLAT_RING1_DS, 0x1234)


def test_down_takes_a_vcpu_off_and_the_last_one_down_powers_off(two):
    bring_up_vcpu1(two)
    assert vcpu_op(two, DOWN, 1) == 0
    assert vcpu_op(two, IS_UP, 1) == 0
    assert two.domain.vcpus[1].runstate.state == OFFLINE
    assert two.machine.stop is None
    assert vcpu_op(two, DOWN, 0) == 0  # the last vCPU: Xen's domain_shutdown(poweroff)
    assert two.machine.stop.reason.startswith("shutdown (poweroff)")
    assert two.machine.stop.code == 0


# -- runstate ------------------------------------------------------------------------
def runstate(booted) -> tuple[int, int, tuple[int, ...]]:
    state, entry, *times = struct.unpack_from("<iQ4Q", booted.memory.read_phys(
        booted.guest["buf"], 44))
    return state, entry, tuple(times)


def test_get_runstate_info_tells_state_entry_time_and_time_per_state(two):
    two.machine.advance(1000)  # 10 us of system time
    assert vcpu_op(two, GET_RUNSTATE_INFO, 0, bytes(44)) == 0
    assert runstate(two) == (RUNNING, 0, (10_000, 0, 0, 0))
    assert vcpu_op(two, GET_RUNSTATE_INFO, 1, bytes(44)) == 0
    assert runstate(two) == (OFFLINE, 0, (0, 0, 0, 10_000))
    bring_up_vcpu1(two)
    two.machine.advance(500)
    assert vcpu_op(two, GET_RUNSTATE_INFO, 1, bytes(44)) == 0
    assert runstate(two) == (RUNNABLE, 10_000, (0, 5_000, 0, 10_000))


def test_get_runstate_info_into_the_hypervisor_is_efault(two):
    assert vcpu_op(two, GET_RUNSTATE_INFO, 0, arg=HYPERVISOR) == neg(EFAULT)


def test_register_runstate_memory_area_writes_the_runstate_there(two):
    area = two.guest["info_page"]
    assert vcpu_op(two, REGISTER_RUNSTATE_MEMORY_AREA, 1, struct.pack("<Q", area)) == 0
    assert u32(two, area) == OFFLINE
    assert vcpu_op(two, REGISTER_RUNSTATE_MEMORY_AREA, 1,
                   struct.pack("<Q", HYPERVISOR)) == neg(EFAULT)


# -- timers --------------------------------------------------------------------------
def bind_timer(booted, vcpu: int) -> int:
    booted.write("buf", struct.pack("<III", VIRQ_TIMER, vcpu, 0))
    assert hypercall(booted, HC.event_channel_op, BIND_VIRQ, booted.guest["buf"]) == 0
    return u32(booted, booted.guest["buf"] + 8)


def pending(booted, port: int) -> bool:
    return bool(booted.memory.read_phys(EVTCHN_PENDING + port // 8, 1)[0] >> port % 8 & 1)


def clear_pending(booted, port: int) -> None:
    byte = booted.memory.read_phys(EVTCHN_PENDING + port // 8, 1)[0]
    booted.memory.write_phys(EVTCHN_PENDING + port // 8, bytes((byte & ~(1 << port % 8),)))


@pytest.mark.parametrize("period", [0, 999_999, 1 << 63])
def test_a_periodic_timer_under_a_millisecond_or_past_stime_is_einval(two, period):
    assert vcpu_op(two, SET_PERIODIC_TIMER, 0, struct.pack("<Q", period)) == neg(EINVAL)


def test_a_periodic_timer_raises_its_vcpus_virq_timer_every_period(two):
    port = bind_timer(two, 1)
    assert vcpu_op(two, SET_PERIODIC_TIMER, 1, struct.pack("<Q", 1_000_000)) == 0
    events = two.domain.events
    for _ in range(3):
        two.machine.advance(99_999)
        events.fire_due_timer()
        assert not pending(two, port)
        two.machine.advance(1)  # 1 ms: 100,000 instructions
        events.fire_due_timer()
        assert pending(two, port)
        clear_pending(two, port)
    assert vcpu_op(two, STOP_PERIODIC_TIMER, 1) == 0
    two.machine.advance(200_000)
    events.fire_due_timer()
    assert not pending(two, port)


def test_the_singleshot_timer_is_the_calling_vcpus_own(two):
    timer = struct.pack("<QI", 1_000_000, 0)
    assert vcpu_op(two, SET_SINGLESHOT_TIMER, 1, timer) == neg(EINVAL)
    assert vcpu_op(two, STOP_SINGLESHOT_TIMER, 1) == neg(EINVAL)
    assert vcpu_op(two, SET_SINGLESHOT_TIMER, 0, timer) == 0
    assert two.domain.vcpus[0].timer_deadline == 1_000_000
    assert vcpu_op(two, STOP_SINGLESHOT_TIMER, 0) == 0
    assert two.domain.vcpus[0].timer_deadline is None


def test_a_singleshot_deadline_past_is_etime_with_future_else_fires_now(two):
    port = bind_timer(two, 0)
    two.machine.advance(1000)  # now: 10,000 ns
    assert vcpu_op(two, SET_SINGLESHOT_TIMER, 0,
                   struct.pack("<QI", 9_999, SSHOTTMR_FUTURE)) == neg(ETIME)
    assert not pending(two, port)
    assert vcpu_op(two, SET_SINGLESHOT_TIMER, 0, struct.pack("<QI", 9_999, 0)) == 0
    assert pending(two, port)


# -- vcpu_info -------------------------------------------------------------------------
def info_args(booted, offset: int = 0, mfn: int | None = None) -> bytes:
    frame = booted.guest["info_page"] >> 12 if mfn is None else mfn
    return struct.pack("<QII", frame, offset, 0)


def test_register_vcpu_info_moves_it_with_its_contents_and_marks_all_pending(two):
    old = SHARED_INFO + VCPU_INFO_SIZE
    two.memory.write_phys(old + 8, struct.pack("<I", 0xC0FFEE))  # arch.cr2
    assert vcpu_op(two, REGISTER_VCPU_INFO, 1, info_args(two, offset=128)) == 0
    new = two.guest["info_page"] + 128
    assert two.domain.vcpus[1].info == new
    assert two.memory.read_phys(new, 2) == b"\x01\x01"  # upcall pending; still masked
    assert u32(two, new + 4) == 0xFFFFFFFF  # every selector word pending
    assert u32(two, new + 8) == 0xC0FFEE
    assert vcpu_op(two, REGISTER_VCPU_INFO, 1, info_args(two)) == neg(EBUSY)


@pytest.mark.parametrize("offset", [4096 - 63, 4032 + 4, 2])
def test_a_vcpu_info_crossing_its_page_or_misaligned_is_enxio(two, offset):
    assert vcpu_op(two, REGISTER_VCPU_INFO, 0, info_args(two, offset=offset)) == neg(ENXIO)


def test_a_vcpu_info_in_a_frame_not_the_domains_is_einval(two):
    # An offset of a page or more names another frame than mfn: -EINVAL first.
    assert vcpu_op(two, REGISTER_VCPU_INFO, 0, info_args(two, offset=4096)) == neg(EINVAL)
    assert vcpu_op(two, REGISTER_VCPU_INFO, 0, info_args(two, mfn=0xFFFFF)) == neg(EINVAL)
    assert vcpu_op(two, REGISTER_VCPU_INFO, 0,
                   info_args(two, mfn=HYPERVISOR >> 12)) == neg(EINVAL)


def test_a_vcpu_info_in_a_page_table_is_eacces(two):
    base = two.domain.pagetables.base_mfn
    assert vcpu_op(two, REGISTER_VCPU_INFO, 0, info_args(two, mfn=base)) == neg(EACCES)
    assert two.domain.vcpus[0].info == SHARED_INFO


def test_register_vcpu_time_memory_area_keeps_a_copy_of_the_time(two):
    area = two.guest["info_page"]
    two.machine.advance(1000)
    assert vcpu_op(two, REGISTER_VCPU_TIME_MEMORY_AREA, 0, struct.pack("<Q", area)) == 0
    assert struct.unpack("<Q", two.memory.read_phys(area + 16, 8))[0] == 10_000
    assert vcpu_op(two, REGISTER_VCPU_TIME_MEMORY_AREA, 0,
                   struct.pack("<Q", HYPERVISOR)) == neg(EFAULT)


def test_send_nmi_takes_no_argument_and_get_physid_is_the_hardware_domains(two):
    assert vcpu_op(two, SEND_NMI, 1, arg=4) == neg(EINVAL)
    assert vcpu_op(two, SEND_NMI, 1) == 0
    assert two.domain.vcpus[1].nmi_pending
    assert vcpu_op(two, GET_PHYSID, 0, bytes(8)) == neg(EINVAL)


# -- event channels across vCPUs ---------------------------------------------------------
def evtchn(booted, cmd: int, *words: int) -> int:
    booted.write("buf", struct.pack(f"<{len(words)}I", *words))
    return hypercall(booted, HC.event_channel_op, cmd, booted.guest["buf"])


def upcall_pending(booted, vcpu: int) -> int:
    return booted.memory.read_phys(SHARED_INFO + VCPU_INFO_SIZE * vcpu, 1)[0]


def test_an_ipi_port_raises_the_upcall_of_the_vcpu_it_was_bound_to(two):
    assert evtchn(two, BIND_IPI, 1, 0) == 0
    port = u32(two, two.guest["buf"] + 4)
    assert evtchn(two, SEND, port) == 0
    assert upcall_pending(two, 1) == 1 and upcall_pending(two, 0) == 0
    assert u32(two, SHARED_INFO + VCPU_INFO_SIZE + 4) == 1 << port // 32


def test_virq_timer_binds_once_per_vcpu_and_a_global_virq_on_vcpu_0_only(two):
    first, second = bind_timer(two, 0), bind_timer(two, 1)
    assert first != second
    assert evtchn(two, BIND_VIRQ, VIRQ_TIMER, 1, 0) == neg(EEXIST)
    assert evtchn(two, BIND_VIRQ, VIRQ_TIMER, 2, 0) == neg(ENOENT)
    assert evtchn(two, BIND_VIRQ, VIRQ_CONSOLE, 1, 0) == neg(EINVAL)


def test_bind_vcpu_moves_an_unbound_port_to_the_other_vcpu(two):
    assert evtchn(two, ALLOC_UNBOUND, DOMID_SELF, 0) == 0
    port = u32(two, two.guest["buf"] + 4)
    assert evtchn(two, BIND_VCPU, port, 1) == 0
    two.domain.events.set_pending(port)
    assert upcall_pending(two, 1) == 1 and upcall_pending(two, 0) == 0
    assert evtchn(two, BIND_VCPU, port, 2) == neg(ENOENT)


def test_a_vcpu_polling_a_port_wakes_when_another_vcpu_sends_on_it(two):
    bring_up_vcpu1(two)
    assert evtchn(two, BIND_IPI, 1, 0) == 0
    port = u32(two, two.guest["buf"] + 4)
    vcpu0, vcpu1 = two.domain.vcpus
    two.domain.scheduler.switch_to(vcpu1)
    ports = two.guest["buf"] + 64
    two.write(ports, struct.pack("<I", port))
    two.write("buf", struct.pack("<IIQ", ports, 1, 0))  # sched_poll: no timeout
    assert hypercall(two, HC.sched_op, SCHEDOP_POLL, two.guest["buf"]) == 0
    assert vcpu1.blocked and vcpu1.polling == {port}
    assert vcpu1.runstate.state == BLOCKED
    two.domain.scheduler.switch_to(vcpu0)
    assert evtchn(two, SEND, port) == 0  # vCPU 1's events are masked: the poll wakes it
    assert not vcpu1.blocked and vcpu1.polling is None
    assert vcpu1.runstate.state == RUNNABLE
    assert upcall_pending(two, 1) == 1 and upcall_pending(two, 0) == 0


def test_events_reach_a_vcpu_info_where_register_vcpu_info_moved_it(two):
    assert vcpu_op(two, REGISTER_VCPU_INFO, 1, info_args(two)) == 0
    new = two.guest["info_page"]
    two.memory.write_phys(new, b"\x00\x01\x00\x00" + bytes(4))  # the guest takes all
    assert evtchn(two, BIND_IPI, 1, 0) == 0
    port = u32(two, two.guest["buf"] + 4)
    assert evtchn(two, SEND, port) == 0
    assert two.memory.read_phys(new, 1) == b"\x01"
    assert u32(two, new + 4) == 1 << port // 32
    assert upcall_pending(two, 1) == 0  # the shared_info slot is no longer its


def test_send_nmi_bounces_through_the_vcpus_trap_table_vector_2(two):
    handler = two.guest["buf"] + 0x800
    two.write("buf", struct.pack("<BBHI", 2, 0, FLAT_RING1_CS, handler) + bytes(8))
    assert hypercall(two, HC.set_trap_table, two.guest["buf"]) == 0
    assert vcpu_op(two, SEND_NMI, 0) == 0
    two.machine.supervisor.take_interrupt(two.machine.irqs)
    assert two.domain.vcpu.eip == handler
    assert not two.domain.vcpus[0].nmi_pending
