"""Two vCPUs of a 64-bit PV domain (tests/hv/smpguest64.py): VCPUOP_initialise with
the x86-64 vcpu_guest_context, up, IPIs, a timer each, the 64-bit vcpu_info and
runstate layouts, down; and Xen's failsafe callback when load_segments cannot give
a vCPU its data selectors back (xen/arch/x86/domain.c)."""

import struct

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pvtool.hv.hypercalls import TABLE_64
from pvtool.hv.hypercalls import call as hypercall
from pvtool.hv.vcpu64 import TrapInfo64
from pvtool.machine.cpu import RIP, RSP
from pvtool.machine.stop import StopKind
from tests.hv.harness import boot
from tests.hv.longmode import KERNEL_CODE, KERNEL_STACK, LongModeDomain
from tests.hv.smpguest64 import (
    EXPECTED_OUTPUT64,
    FAILSAFE_BSS,
    FAILSAFE_DATA,
    FAILSAFE_HANDLERS,
    FAILSAFE_TEXT,
    SMP64_BSS,
    SMP64_DATA,
    SMP64_HANDLERS,
    SMP64_TEXT,
    ZAP_BSS,
    ZAP_DATA,
    ZAP_HANDLERS,
    ZAP_TEXT,
)
from tests.hv.test_vcpus import run_two_vcpus as run_vcpus_32_or_64
from tests.hv.test_vcpus import two_runs
from tests.hv.xenguest64 import EINVAL, VIRT_BASE, neg
from tests.profiles import examples

EEXIST = 17
RUNNING, BLOCKED, OFFLINE = 0, 2, 3
FLAT_KERNEL_CS_RPL0, FLAT_KERNEL_SS = 0xE030, 0xE02B
HANDLER = KERNEL_CODE + 0x1000


@pytest.fixture(scope="module")
def smp64(build64):
    return build64(SMP64_TEXT, handlers=SMP64_HANDLERS, data=SMP64_DATA, bss=SMP64_BSS)


@pytest.fixture(scope="module")
def failsafe_guest(build64):
    return build64(FAILSAFE_TEXT, handlers=FAILSAFE_HANDLERS, data=FAILSAFE_DATA,
                   bss=FAILSAFE_BSS)


def run_two_vcpus(guest):
    """To the end, within 5 M instructions (the guests need 450 k)."""
    return run_vcpus_32_or_64(guest, max_insns=5_000_000)


def u64(booted, symbol: str, index: int = 0) -> int:
    return struct.unpack("<Q", booted.memory.read_phys(booted.addr(symbol) + 8 * index, 8))[0]


@pytest.fixture(scope="module")
def smp_run(smp64):
    return run_two_vcpus(smp64)


def test_two_64_bit_vcpus_play_ipi_ping_pong_and_take_their_own_timers(smp_run):
    booted, result = smp_run
    assert result.stop.reason == "shutdown (poweroff)", result.stop
    assert bytes(booted.output) == EXPECTED_OUTPUT64
    assert booted.u32("pings") == 3 and booted.u32("pongs") == 3
    assert booted.u32("timer0_fired") == 1 and booted.u32("timer1_fired") == 1


def test_vcpu1_starts_from_the_64_bit_context(smp_run, smp64):
    booted, _ = smp_run
    assert u64(booted, "up_uninitialised") == neg(EINVAL)
    assert u64(booted, "init_result") == 0
    assert u64(booted, "init_again") == neg(EEXIST)
    assert u64(booted, "up_result") == 0 and u64(booted, "is_up_after") == 1
    assert u64(booted, "vcpu1_rsp") == smp64["stack1_top"]
    assert u64(booted, "vcpu1_rflags") == 0x202  # IF forced, IOPL made virtual...
    assert booted.domain.vcpus[1].iopl == 3  # ...from the context's 0x3202


def test_register_vcpu_info_marks_all_64_selector_bits_pending(smp_run, smp64):
    booted, _ = smp_run
    assert u64(booted, "info_result") == 0
    assert u64(booted, "info1_selector") == 0xFFFF_FFFF_FFFF_FFFF
    assert booted.domain.vcpus[1].info == booted.addr("info1_page") + 64


def test_runstates_have_the_64_bit_layout(smp_run):
    booted, _ = smp_run
    assert u64(booted, "runstate_area_result") == 0
    assert booted.u32("runstate_seen") == RUNNING  # written at registration
    assert u64(booted, "runstate_result") == 0
    runstate = booted.domain.vcpus[1].runstate
    for area in ("runstate1", "runstate_area"):  # get_runstate_info's, and the area's
        state, entry_time, *times = struct.unpack(
            "<i4xQ4Q", booted.memory.read_phys(booted.addr(area), 48))
        assert state == OFFLINE, area
        assert entry_time == runstate.entry_time > 0, area  # at 8, not at 4
        assert times[:3] == runstate.time[:3] and times[BLOCKED] > 0, area
    assert u64(booted, "sshot_result") == 0
    assert booted.u32("ran_after_down") == 0


def test_the_64_bit_two_vcpu_run_is_the_same_twice(smp64):
    runs = two_runs(smp64.path)
    assert runs[0] == runs[1]
    assert runs[0][0] == EXPECTED_OUTPUT64
    assert runs[0][4]["vcpu-switch"] == 8


# -- the failsafe callback ---------------------------------------------------------------
@pytest.fixture(scope="module")
def failsafe_run(failsafe_guest):
    return run_two_vcpus(failsafe_guest)


def test_a_data_selector_xen_cannot_load_sends_the_vcpu_to_its_failsafe_callback(
        failsafe_run, failsafe_guest):
    booted, result = failsafe_run
    assert result.stop.reason == "shutdown (poweroff)", result.stop
    assert u64(booted, "init_result") == 0
    assert booted.u32("failsafe_taken") == 1
    assert booted.u32("entry_reached") == 0  # never at its entry: the failsafe first


def test_the_failsafe_frame_is_xens(failsafe_run, failsafe_guest):
    """load_segments' frame: RCX, R11, DS, ES, FS, GS as the vCPU had them, RIP, CS
    (RPL cleared: kernel mode; the mask 0 above it), RFLAGS (IF = !mask), RSP, SS;
    on the vCPU's stack aligned to 16, 88 bytes below."""
    booted, _ = failsafe_run
    frame = struct.unpack("<11Q", booted.memory.read_phys(booted.addr("failsafe_frame"), 88))
    stack = failsafe_guest["stack1_top"]
    assert frame == (0x1111, 0x2222, 0x0B, 0xE02B, 0, 0x2C, failsafe_guest["vcpu1_entry"],
                     FLAT_KERNEL_CS_RPL0, 0x202, stack, FLAT_KERNEL_SS)
    assert u64(booted, "failsafe_rsp") == (stack & ~15) - 88


def test_the_failsafe_callback_runs_with_the_bad_selectors_null_and_events_masked(
        failsafe_run):
    booted, _ = failsafe_run
    seen = struct.unpack("<4HB", booted.memory.read_phys(booted.addr("seen_ds"), 9))
    assert seen[:4] == (0, 0xE02B, 0, 0)  # DS and GS null; ES loaded; FS was null
    assert seen[4] == 1  # VGCF_failsafe_disables_events


def test_the_failsafe_callback_shows_in_the_trace(failsafe_guest, tmp_path):
    from tests.cli import pvtool

    done = pvtool("run", "--vcpus", "2", "--trace", "--quiet", failsafe_guest.path)
    assert done.status == 0, done.output
    assert (f"vcpu1: failsafe callback to {failsafe_guest['failsafe1']:#x} from "
            f"{failsafe_guest['vcpu1_entry']:#x}: data selectors 0xb 0xe02b 0x0 0x2c"
            ) in done.stderr


def test_a_descriptor_gone_while_the_vcpu_was_off_the_cpu_takes_it_to_failsafe(build64):
    """vCPU 1, its GDT made of the frame vCPU 0's is, loaded DS = 0x0b and blocked;
    vCPU 0 made entry 1 not present by update_descriptor, which changes every GDT made
    of the frame (Xen maps the frame into each); when vCPU 1 comes back to the CPU,
    its frame shows DS 0x0b and the RIP it blocked at (after the hypercall page's
    syscall), in kernel mode; it runs with DS null."""
    guest = build64(ZAP_TEXT, handlers=ZAP_HANDLERS, data=ZAP_DATA, bss=ZAP_BSS)
    booted, result = run_two_vcpus(guest)
    assert result.stop.reason == "shutdown (poweroff)", result.stop
    assert (u64(booted, "gdt_result"), u64(booted, "zap_result")) == (0, 0)
    assert struct.unpack("<H", booted.memory.read_phys(booted.addr("loaded_ds"), 2))[0] == 0x0B
    assert booted.u32("failsafe_taken") == 1
    assert booted.u32("woke_without_failsafe") == 0
    frame = struct.unpack("<11Q", booted.memory.read_phys(booted.addr("failsafe_frame"), 88))
    sched_op_syscall_end = guest["hypercall_page"] + 29 * 32 + 10
    assert frame[2:8] == (0x0B, 0, 0, 0, sched_op_syscall_end, FLAT_KERNEL_CS_RPL0)
    assert frame[10] == FLAT_KERNEL_SS
    assert struct.unpack("<H", booted.memory.read_phys(booted.addr("seen_ds"), 2))[0] == 0


# -- VCPUOP_send_nmi ---------------------------------------------------------------------
class NoInterrupts:
    def pending(self) -> bool:
        return False


def test_send_nmis_nmi_reaches_a_64_bit_vcpu_through_its_trap_table():
    """pv_raise_nmi: through trap_ctxt[2], the 64-bit vCPU's own table."""
    dom = LongModeDomain()
    dom.vcpu.long_mode.trap_table[2] = TrapInfo64(2, 0, False, HANDLER)
    dom.memory.write_phys(KERNEL_CODE, b"\x90\x90")
    dom.memory.write_phys(HANDLER, b"\x90")
    dom.enter(KERNEL_CODE, KERNEL_STACK)
    dom.vcpu.nmi_pending = True  # what send_nmi leaves
    dom.supervisor.take_interrupt(NoInterrupts())
    assert dom.machine.cpu.read(RIP) == HANDLER
    assert not dom.vcpu.nmi_pending
    rcx, r11, rip, cs = dom.qwords(dom.machine.cpu.read(RSP), 4)
    assert (rip, cs & 0xFFFF) == (KERNEL_CODE, 0xE030)


# -- VCPUOP_initialise against any context --------------------------------------------------
XEN_ERRNOS = {14, 17, 22}  # EFAULT, EEXIST, EINVAL: what initialise may answer
CTX_FIELDS = {  # offset, values: Xen's, pvtool's refusals, and nonsense
    "rip": (648, [0, 0x0000_8000_0000_0000, 0xFFFF_8000_0000_0000, VIRT_BASE, 1 << 63]),
    "rsp": (672, [0, 0x0000_8000_0000_0000, 0xFFFF_FFFF_FFFF_FFF0]),
    "cs": (656, [0, 0xE033, 0xE030, 0xE023, 0xE008, 0x0B, 0xFFFF]),
    "ss": (680, [0, 0xE02B, 0xE028, 0xE010, 0x13, 0xFFFF]),
    "ds": (696, [0, 0x0B, 0xE02B, 0xE033, 0xE008, 0x2C, 0xFFFF]),
    "gs": (712, [0, 0x0B, 0xE02B, 0xFFFC]),
    "flags": (512, [0, 4, 8, 0x1C, 0xFFFF_FFFF]),
    "ldt_ents": (4824, [0, 1, 8193]),
    "ldt_base": (4816, [0, 1, 0xFFFF_8000_0000_0000]),
    "gdt_ents": (4960, [0, 1, 14 * 512]),
    "kernel_sp": (4976, [0, 0x0000_8000_0000_0000]),
    "cr1": (4984 + 8, [0, 1 << 12, 0xFFFF_F000, 5 << 12]),
    "cr3": (4984 + 24, [0, 1 << 12, 0xFFFF_F000, 5 << 12]),
    "event": (5112, [0, 0x0000_8000_0000_0000]),
    "fs_base": (5144, [0, 1 << 63]),
    "trap2": (720 + 32 + 8, [0, 0x0000_8000_0000_0000, VIRT_BASE]),
}
CTX_AT = "ctx"
WORD = (1 << 64) - 1


def call(domain, vcpu, number: int, args: tuple[int, ...]) -> int:
    return hypercall(domain, vcpu, number, args, TABLE_64)


@pytest.fixture(scope="module")
def idle64(build64):
    return build64("", bss="ctx: .skip 8192")


def valid_context(booted) -> bytearray:
    """vCPU 1 at the kernel's entry, in kernel mode, on the kernel's L4."""
    ctx = bytearray(5168)
    for offset, value in ((512, 4), (648, booted.guest["_start"]), (656, 0xE033),
                          (672, booted.guest["stack_top"]), (680, 0xE02B),
                          (4984 + 24, booted.domain.pagetables.base_mfn << 12)):
        struct.pack_into("<Q", ctx, offset, value)
    return ctx


@settings(max_examples=examples(60), database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(changes=st.dictionaries(st.sampled_from(sorted(CTX_FIELDS)), st.integers(0, 10),
                               max_size=4))
@example(changes={"rip": 2})  # the first canonical high address: the bytes before it are
# not canonical, and telling `int n` from a fault read them (found by a campaign run)
def test_initialise64_answers_any_context_and_a_refused_one_holds_nothing(idle64, changes):
    """Whatever the context: 0 or one of Xen's errors; a refusal takes no reference on
    a frame; an accepted one runs vCPU 1 (or sends it to its failsafe callback, or
    crashes the domain with a reason), never a Python error."""
    booted = boot(idle64, vcpus=2)
    domain = booted.domain
    ctx = valid_context(booted)
    for name, pick in changes.items():
        offset, values = CTX_FIELDS[name]
        struct.pack_into("<Q", ctx, offset, values[pick % len(values)])
    booted.write(CTX_AT, bytes(ctx))
    typed = dict(domain.pagetables.typed)
    refs = [domain.frames.refs(mfn) for mfn in range(domain.nr_pages)]
    result = call(domain, domain.vcpu, 24, (0, 1, booted.guest[CTX_AT], 0, 0))
    if result:
        assert -result & WORD in XEN_ERRNOS, result
        assert dict(domain.pagetables.typed) == typed
        assert [domain.frames.refs(mfn) for mfn in range(domain.nr_pages)] == refs
        return
    assert call(domain, domain.vcpu, 24, (1, 1, 0, 0, 0)) == 0
    domain.scheduler.switch_to(domain.vcpus[1])
    booted.slice(1000)
    stop = booted.machine.stop
    assert stop is None or stop.kind in (StopKind.CRASH, StopKind.SHUTDOWN), stop
