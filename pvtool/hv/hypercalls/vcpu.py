"""HYPERVISOR_vcpu_op(cmd, vcpuid, arg): a domain's vCPUs, up and down, and each
vCPU's timers, runstate and shared areas (public/vcpu.h).

Answered as Xen 4.19 answers a PV guest: do_vcpu_op finds the vCPU first
(-ENOENT beyond the domain's), then common_vcpu_op (xen/common/domain.c) serves the
command, and the x86 arch_do_vcpu_op (xen/arch/x86/domain.c) the x86 ones
(send_nmi, get_physid, register_vcpu_time_memory_area); any other is -ENOSYS.
VCPUOP_initialise is hv/vcpu_context.py's.

A 64-bit guest gets the same commands with its own layouts (VcpuAbi): an 8-byte
pending selector in its vcpu_info (aligned to 8), a 48-byte runstate, a 16-byte
single-shot request, and addresses of 64 bits where a 32-bit guest's are cut to 32.
"""

from collections.abc import Callable
from dataclasses import dataclass

from pvtool.abi.layouts import (
    VCPU_INFO,
    VCPU_REGISTER_RUNSTATE_AREA,
    VCPU_REGISTER_TIME_AREA,
    VCPU_REGISTER_VCPU_INFO,
    VCPU_RUNSTATE_INFO,
    VCPU_SET_PERIODIC_TIMER,
    VCPU_SET_SINGLESHOT_TIMER,
    Layout,
)
from pvtool.abi.xen import VCPU_SSHOTTMR_FUTURE, Errno, ShutdownReason, VcpuOp
from pvtool.abi.xen64 import (
    VCPU_INFO_64,
    VCPU_INFO_ALIGN_64,
    VCPU_RUNSTATE_INFO_64,
    VCPU_SET_SINGLESHOT_TIMER_64,
)
from pvtool.hv.domain import PvDomain, VCpu
from pvtool.hv.errors import HypercallError
from pvtool.hv.frames import PageType, page_type
from pvtool.hv.vcpu_context import initialise as initialise32
from pvtool.hv.vcpu_context64 import initialise64
from pvtool.x86.paging import PAGE_SIZE

MIN_PERIOD_NS = 1_000_000  # MILLISECS(1): a shorter periodic timer is -EINVAL
STIME_DELTA_MAX = (1 << 63) - 1  # the longest period s_time_t holds
VCPU_INFO_ALIGN = 4  # alignof(struct vcpu_info) for a 32-bit guest


@dataclass(frozen=True)
class VcpuAbi:
    """What vcpu_op reads and writes for a guest of one width."""

    vcpu_info: Layout
    info_align: int
    runstate: Layout
    singleshot: Layout
    address_mask: int  # a guest handle's significant bits


VCPU_ABI = {
    32: VcpuAbi(VCPU_INFO, VCPU_INFO_ALIGN, VCPU_RUNSTATE_INFO, VCPU_SET_SINGLESHOT_TIMER,
                0xFFFF_FFFF),
    64: VcpuAbi(VCPU_INFO_64, VCPU_INFO_ALIGN_64, VCPU_RUNSTATE_INFO_64,
                VCPU_SET_SINGLESHOT_TIMER_64, 0xFFFF_FFFF_FFFF_FFFF),
}


def vcpu_op(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    cmd, vcpu_id, arg = args[0], args[1], args[2]
    if vcpu_id >= len(dom.vcpus):
        raise HypercallError(Errno.ENOENT, f"vcpu {vcpu_id}: the domain has {len(dom.vcpus)}")
    handler = COMMANDS.get(cmd)
    if handler is None:
        raise HypercallError(Errno.ENOSYS, f"vcpu_op command {cmd}")
    return handler(dom, dom.vcpus[vcpu_id], arg)


def _read(dom: PvDomain, layout: Layout, arg: int) -> dict:
    return layout.unpack(dom.copy_from_guest(arg, layout.size))


def initialise(dom: PvDomain, target: VCpu, arg: int) -> int:
    """A vcpu_guest_context of the guest's width (hv/vcpu_context*.py)."""
    return (initialise64 if target.bits == 64 else initialise32)(dom, target, arg)


def up(dom: PvDomain, target: VCpu, arg: int) -> int:
    """A vCPU never initialised cannot come up (-EINVAL); one up stays up."""
    if not target.initialised:
        raise HypercallError(Errno.EINVAL, f"vcpu {target.id} is not initialised")
    dom.scheduler.bring_up(target)
    return 0


def down(dom: PvDomain, target: VCpu, arg: int) -> int:
    """The last vCPU going down shuts the domain down (poweroff), as Xen does."""
    if not any(v.up for v in dom.vcpus if v is not target):
        dom.shutdown(ShutdownReason.poweroff, "shutdown (poweroff): the last vCPU went down")
        return 0
    dom.scheduler.take_down(target)
    return 0


def is_up(dom: PvDomain, target: VCpu, arg: int) -> int:
    return int(target.up)


def get_runstate_info(dom: PvDomain, target: VCpu, arg: int) -> int:
    dom.copy_to_guest(arg, target.runstate.info(dom.events.now_ns()))
    return 0


def register_runstate_memory_area(dom: PvDomain, target: VCpu, arg: int) -> int:
    """Where the scheduler writes TARGET's runstate at each switch, and now; the
    address must lie in the guest's range (guest_handle_okay: -EFAULT), but a write
    that fails later is ignored."""
    abi = VCPU_ABI[target.bits]
    address = _read(dom, VCPU_REGISTER_RUNSTATE_AREA, arg)["addr"] & abi.address_mask
    dom.check_guest_range(address, abi.runstate.size)
    target.runstate_area = address
    dom.scheduler.write_runstate_area(target)
    return 0


def set_periodic_timer(dom: PvDomain, target: VCpu, arg: int) -> int:
    """vcpu_set_periodic_timer: a tick at once if a period has passed since the
    last, then every PERIOD_NS while TARGET has the CPU (hv/events.py)."""
    period = _read(dom, VCPU_SET_PERIODIC_TIMER, arg)["period_ns"]
    if not MIN_PERIOD_NS <= period <= STIME_DELTA_MAX:
        raise HypercallError(Errno.EINVAL, f"periodic timer of {period} ns")
    dom.events.set_period(target, period)
    return 0


def stop_periodic_timer(dom: PvDomain, target: VCpu, arg: int) -> int:
    dom.events.set_period(target, 0)
    return 0


def set_singleshot_timer(dom: PvDomain, target: VCpu, arg: int) -> int:
    """Only the calling vCPU's (-EINVAL for another); with VCPU_SSHOTTMR_future a
    deadline already past is -ETIME; a past one without it fires at once."""
    _require_current(dom, target)
    req = _read(dom, VCPU_ABI[target.bits].singleshot, arg)
    deadline = req["timeout_abs_ns"]
    if req["flags"] & VCPU_SSHOTTMR_FUTURE and deadline < dom.events.now_ns():
        raise HypercallError(Errno.ETIME, f"single-shot deadline {deadline} ns has passed")
    target.timer_deadline = deadline
    dom.events.fire_due_timer()
    return 0


def stop_singleshot_timer(dom: PvDomain, target: VCpu, arg: int) -> int:
    _require_current(dom, target)
    target.timer_deadline = None
    return 0


def _require_current(dom: PvDomain, target: VCpu) -> None:
    if target is not dom.vcpu:
        raise HypercallError(Errno.EINVAL, f"vcpu {target.id}'s single-shot timer is its own")


def register_vcpu_info(dom: PvDomain, target: VCpu, arg: int) -> int:
    """Move TARGET's vcpu_info into a frame of the guest's (map_guest_area): once
    only (-EBUSY), inside one page and aligned (-ENXIO), in a frame the domain owns
    (-EINVAL) that can be writable (-EACCES: a page table cannot). The old contents
    move with it, and every event is marked pending so that none is lost: every bit
    of the pending selector, 32 or 64 of them."""
    info = VCPU_ABI[target.bits].vcpu_info
    req = _read(dom, VCPU_REGISTER_VCPU_INFO, arg)
    mfn, offset = req["mfn"], req["offset"]
    address = mfn * PAGE_SIZE + offset
    if address >= 1 << 64 or address >> 12 != mfn:
        raise HypercallError(Errno.EINVAL, f"vcpu_info at frame {mfn:#x} + {offset:#x}")
    if target.info_registered:
        raise HypercallError(Errno.EBUSY, f"vcpu {target.id}'s vcpu_info is registered")
    if offset + info.size > PAGE_SIZE or offset % VCPU_ABI[target.bits].info_align:
        raise HypercallError(Errno.ENXIO, f"vcpu_info at offset {offset:#x} of a page")
    if dom.frames.owner(mfn) != dom.domid or mfn >= dom.nr_pages:
        raise HypercallError(Errno.EINVAL, f"frame {mfn:#x} is not the domain's")
    if page_type(dom.frames.type_info(mfn)) not in (PageType.NONE, PageType.WRITABLE):
        raise HypercallError(Errno.EACCES, f"frame {mfn:#x} cannot be writable")
    dom.pagetables.hold_writable(mfn)
    old = dom.memory.read_phys(target.info, info.size)
    dom.memory.write_phys(address, old)
    target.info, target.info_registered = address, True
    selector = info.fields["evtchn_pending_sel"]
    dom.memory.write_phys(address + selector.offset, b"\xff" * selector.size)
    dom.events.mark_events_pending(target)
    dom.events.update_time(target)
    return 0


def send_nmi(dom: PvDomain, target: VCpu, arg: int) -> int:
    """The argument must be null; the NMI reaches TARGET through its trap table's
    vector 2 (pv_raise_nmi), once, at its next slice."""
    if arg:
        raise HypercallError(Errno.EINVAL, "send_nmi takes no argument")
    target.nmi_pending = True
    target.unblock(dom.events.now_ns())
    return 0


def get_physid(dom: PvDomain, target: VCpu, arg: int) -> int:
    """Only the hardware domain's pinned vCPUs have a physical CPU id."""
    raise HypercallError(Errno.EINVAL, "get_physid is for the hardware domain")


def register_vcpu_time_memory_area(dom: PvDomain, target: VCpu, arg: int) -> int:
    """A second copy of vcpu_info.time, kept up to date with it (a guest VA)."""
    address = _read(dom, VCPU_REGISTER_TIME_AREA, arg)["addr"] & VCPU_ABI[target.bits].address_mask
    dom.check_guest_range(address, 1)
    target.time_area = address
    dom.events.update_time(target)
    return 0


COMMANDS: dict[int, Callable[[PvDomain, VCpu, int], int]] = {
    VcpuOp.initialise: initialise,
    VcpuOp.up: up,
    VcpuOp.down: down,
    VcpuOp.is_up: is_up,
    VcpuOp.get_runstate_info: get_runstate_info,
    VcpuOp.register_runstate_memory_area: register_runstate_memory_area,
    VcpuOp.set_periodic_timer: set_periodic_timer,
    VcpuOp.stop_periodic_timer: stop_periodic_timer,
    VcpuOp.set_singleshot_timer: set_singleshot_timer,
    VcpuOp.stop_singleshot_timer: stop_singleshot_timer,
    VcpuOp.register_vcpu_info: register_vcpu_info,
    VcpuOp.send_nmi: send_nmi,
    VcpuOp.get_physid: get_physid,
    VcpuOp.register_vcpu_time_memory_area: register_vcpu_time_memory_area,
}
