"""Event channels, 2-level (XEN-ABI.md, "Structures"; Xen's common/event_channel.c and
event_2l.c), the one-shot timer of set_timer_op and vcpu_info.time.

A port is pending when its bit in shared_info.evtchn_pending is set. Setting it on an
unmasked port also sets the port's word in vcpu_info.evtchn_pending_sel and
vcpu_info.evtchn_upcall_pending, which is what makes the PV supervisor bounce to the
event callback once the upcall mask is clear (hv/traps.py).

The other end of an interdomain port is a backend in the hypervisor: an object whose
notify() a send from the guest runs. The console and xenstore ports of start_info are
connected from the start to the hypervisor's side (DOMID_XEN): a send on the console
port drains the console ring (hv/console.py). A device backend (blkback) binds at run
time, as Xen's EVTCHNOP_bind_interdomain binds a backend domain's port, the port its
frontend allocated unbound for BACKEND_DOMID:

    channel = events.bind_backend(port, backend)  # the guest's sends run backend.notify()
    channel.send()                                 # raise the guest's port
    channel.close()                                # the guest's port is unbound again

EVTCHNOP_status then reports the guest's port interdomain to (BACKEND_DOMID,
channel.local_port). Closing either end leaves the other unbound, as evtchn_close
does: after the guest closes its port, channel.send() raises nothing.

Time is the machine's virtual clock (machine/clock.py): system time in ns is the
instruction count at VIRTUAL_HZ, and the "TSC" of vcpu_info.time is the instruction
count too, so tsc_to_system_mul/tsc_shift convert one into the other exactly. The
guest's `rdtsc` reads that same count (machine/clock.py, VirtualClock.read_tsc), so a
kernel that extrapolates system time from its TSC, as Xen's pvclock readers do
(public/xen.h, struct vcpu_time_info), gets the time the hypervisor's timers keep.

The wall clock in shared_info (wc_sec, wc_nsec: the UTC time at system time 0, public/
xen.h) is the RTC's start in native mode, RTC_EPOCH, so both modes agree on the date.
wc_sec_hi (arch_shared_info on x86-32) stays 0: RTC_EPOCH fits 32 bits.
"""

import struct
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pvtool.abi import layouts, xen64
from pvtool.abi.xen import (
    BACKEND_DOMID,
    DOMID_SELF,
    DOMID_XEN,
    NR_EVENT_CHANNELS_32,
    Errno,
    EvtchnStatus,
    Virq,
)
from pvtool.hv import layout
from pvtool.hv.errors import HypercallError
from pvtool.machine.clock import VIRTUAL_HZ
from pvtool.machine.pc import RTC_EPOCH

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pvtool.hv.domain import Domain, VCpu

# Offsets in a vCPU's vcpu_info, wherever it lies (VCpu.info): the same in either width.
UPCALL_PENDING = layouts.VCPU_INFO.offset("evtchn_upcall_pending")
TIME = layouts.VCPU_INFO.offset("time_version")
TIME_INFO_SIZE = 32  # struct vcpu_time_info
NS_PER_SECOND = 1_000_000_000
# ns = (tsc << 4) * 0xA0000000 >> 32 = tsc * 10: one instruction is 10 ns at 100 MHz.
TSC_SHIFT = 4
TSC_TO_SYSTEM_MUL = (NS_PER_SECOND // VIRTUAL_HZ << 32) >> TSC_SHIFT
# Every PV vCPU starts with a 100 Hz periodic timer (Xen's pv_vcpu_initialise, xen/arch/
# x86/pv/domain.c: "PV guests by default have a 100Hz ticker", MILLISECS(10)).
DEFAULT_PERIOD_NS = 10_000_000
BOUND_VIRQS = frozenset({Virq.timer, Virq.debug, Virq.console})
GLOBAL_VIRQS = frozenset({Virq.console})  # the rest are per-vCPU (virq_is_global)

# Ports come in buckets of a page of struct evtchn (64 bytes on a release build):
# EVTCHNS_PER_BUCKET, xen/include/xen/sched.h.
EVTCHNS_PER_BUCKET = 64


@dataclass(frozen=True)
class SharedInfoAddresses:
    """Where the pending and mask bitmaps and the wall clock are in the hypervisor's
    shared_info page for a guest of one width, and the selector word in a vcpu_info
    (an offset: each vCPU has its own): Xen's words are unsigned longs (xen.h), so on
    x86-64 the selector is 8 bytes and the mask and wall clock move."""

    pending: int
    mask: int
    pending_sel: int
    word_bits: int
    wall_clock: int


def _addresses(shared: layouts.Layout, vcpu: layouts.Layout, word_bits: int):
    return SharedInfoAddresses(
        layout.SHARED_INFO + shared.offset("evtchn_pending"),
        layout.SHARED_INFO + shared.offset("evtchn_mask"),
        vcpu.offset("evtchn_pending_sel"), word_bits,
        layout.SHARED_INFO + shared.offset("wc_version"))


SHARED_INFO_BY_WIDTH = {32: _addresses(layouts.SHARED_INFO, layouts.VCPU_INFO, 32),
                        64: _addresses(xen64.SHARED_INFO_64, xen64.VCPU_INFO_64, 64)}


class Backend(Protocol):
    def notify(self) -> None:
        """The guest sent on the port: look at the shared ring."""


@dataclass
class Port:
    status: EvtchnStatus
    virq: int = 0
    remote_dom: int = 0
    remote_port: int = 0
    backend: Backend | None = None  # an interdomain port's other end, if it listens
    vcpu: int = 0  # the vCPU it notifies (notify_vcpu_id): bind_virq, bind_ipi, bind_vcpu


@dataclass
class BackendChannel:
    """A backend's end of an interdomain channel to the guest's PORT."""

    events: "EventChannels"
    port: int  # the guest's
    local_port: int  # the backend's, in BACKEND_DOMID's numbering
    bound: Port

    @property
    def connected(self) -> bool:
        """Whether the guest's end is still this channel's (it has not closed it)."""
        return self.events.ports.get(self.port) is self.bound

    def send(self) -> None:
        """EVTCHNOP_send from the backend's side: the guest's port goes pending; a
        send on a channel the guest closed is dropped, as on an unbound port."""
        if self.connected:
            self.events.set_pending(self.port)

    def close(self) -> None:
        """The backend closes its end: the guest's port is unbound again, waiting for
        BACKEND_DOMID (evtchn_close)."""
        if self.connected:
            self.events.ports[self.port] = Port(EvtchnStatus.unbound, remote_dom=BACKEND_DOMID)


class EventChannels:
    def __init__(self, domain: "Domain"):
        self.domain = domain
        self.memory = domain.memory
        self.shared = SHARED_INFO_BY_WIDTH[domain.machine.cpu.bits]
        self.ports: dict[int, Port] = {}
        self.valid_ports = EVTCHNS_PER_BUCKET  # evtchn_init allocates the first bucket

    # The running vCPU's timer and poll (each vCPU has its own: hv/domain.py VCpu).
    @property
    def timer_deadline(self) -> int | None:  # ns of system time, set_timer_op
        return self.domain.vcpu.timer_deadline

    @timer_deadline.setter
    def timer_deadline(self, value: int | None) -> None:
        self.domain.vcpu.timer_deadline = value

    @property
    def polling(self) -> frozenset[int] | None:  # SCHEDOP_poll's ports while it waits
        return self.domain.vcpu.polling

    @polling.setter
    def polling(self, value: frozenset[int] | None) -> None:
        self.domain.vcpu.polling = value

    @property
    def poll_deadline(self) -> int | None:  # ns: when the poll times out
        return self.domain.vcpu.poll_deadline

    @poll_deadline.setter
    def poll_deadline(self, value: int | None) -> None:
        self.domain.vcpu.poll_deadline = value

    def _vcpu(self, vcpu_id: int) -> "VCpu":
        """The domain's vCPU VCPU_ID; -ENOENT beyond them (domain_vcpu)."""
        vcpus = self.domain.vcpus
        if not 0 <= vcpu_id < len(vcpus):
            raise HypercallError(Errno.ENOENT, f"vcpu {vcpu_id}: the domain has "
                                 f"{len(vcpus)}")
        return vcpus[vcpu_id]

    # -- the bitmaps -------------------------------------------------------------------
    def _bit(self, base: int, port: int) -> bool:
        return bool(self.memory.read_phys(base + port // 8, 1)[0] >> (port % 8) & 1)

    def _set_bit(self, base: int, port: int, value: bool) -> None:
        byte = self.memory.read_phys(base + port // 8, 1)[0]
        bit = 1 << (port % 8)
        self.memory.write_phys(base + port // 8, bytes((byte | bit if value else byte & ~bit,)))

    def is_pending(self, port: int) -> bool:
        return self._bit(self.shared.pending, port)

    def is_masked(self, port: int) -> bool:
        return self._bit(self.shared.mask, port)

    def set_pending(self, port: int) -> None:
        """Xen's evtchn_2l_set_pending: mark PORT and, unless it is masked, flag its
        word in the selector and the upcall of the vCPU it notifies, waking that vCPU;
        a vCPU polling PORT wakes too (evtchn_check_pollers)."""
        if self._bit(self.shared.pending, port):
            return
        self._set_bit(self.shared.pending, port, True)
        self._flag_upcall(port)
        for vcpu in self.domain.vcpus:
            if vcpu.polling is not None and port in vcpu.polling:
                vcpu.unblock(self.now_ns())

    def _flag_upcall(self, port: int) -> None:
        shared = self.shared
        if self._bit(shared.mask, port):
            return
        bound = self.ports.get(port)
        vcpus = self.domain.vcpus
        vcpu = vcpus[bound.vcpu] if bound is not None and bound.vcpu < len(vcpus) else vcpus[0]
        self._set_bit(vcpu.info + shared.pending_sel, port // shared.word_bits, True)
        self.mark_events_pending(vcpu)

    def mark_events_pending(self, vcpu: "VCpu") -> None:
        """vcpu_mark_events_pending: flag VCPU's upcall and wake it if it waits."""
        self.memory.write_phys(vcpu.info + UPCALL_PENDING, b"\x01")
        vcpu.unblock(self.now_ns())

    def work_pending(self, vcpu: "VCpu | None" = None) -> bool:
        """An upcall VCPU's (default: the running one's) event callback should take:
        flagged and some word selected."""
        info = (vcpu or self.domain.vcpu).info
        shared = self.shared
        return bool(self.memory.read_phys(info + UPCALL_PENDING, 1)[0] and any(
            self.memory.read_phys(info + shared.pending_sel, shared.word_bits // 8)))

    # -- the operations (EVTCHNOP_*) -----------------------------------------------------
    def _port(self, port: int) -> Port:
        found = self.ports.get(port)
        if found is None:
            raise HypercallError(Errno.EINVAL, f"event channel {port} is not bound")
        return found

    def _free_port(self) -> int:
        for port in range(1, NR_EVENT_CHANNELS_32):
            if port not in self.ports:
                self._note_bucket(port)
                return port
        raise HypercallError(Errno.ENOSPC, "no free event channel")

    def _note_bucket(self, port: int) -> None:
        """get_free_port allocates the bucket of a port past the valid ones; a bucket
        is never freed (not even by EVTCHNOP_reset), so its ports stay valid."""
        buckets = port // EVTCHNS_PER_BUCKET + 1
        self.valid_ports = max(self.valid_ports, buckets * EVTCHNS_PER_BUCKET)

    def port_is_valid(self, port: int) -> bool:
        """Xen's port_is_valid(): the port lies in a bucket the domain has allocated,
        bound or not."""
        return port < self.valid_ports

    def bind_virq(self, virq: int, vcpu: int) -> int:
        """EVTCHNOP_bind_virq (evtchn_bind_virq): a global VIRQ binds on vCPU 0 only
        (-EINVAL), a per-vCPU one (VIRQ_TIMER, VIRQ_DEBUG) once per vCPU (-EEXIST)."""
        if virq not in BOUND_VIRQS or virq in GLOBAL_VIRQS and vcpu != 0:
            raise HypercallError(Errno.EINVAL, f"VIRQ {virq} on vcpu {vcpu}")
        self._vcpu(vcpu)
        if any(p.status == EvtchnStatus.virq and p.virq == virq and p.vcpu == vcpu
               for p in self.ports.values()):
            raise HypercallError(Errno.EEXIST, f"VIRQ {virq} is bound already on vcpu {vcpu}")
        port = self._free_port()
        self.ports[port] = Port(EvtchnStatus.virq, virq=virq, vcpu=vcpu)
        return port

    def bind_ipi(self, vcpu: int) -> int:
        """EVTCHNOP_bind_ipi: a port whose sends raise it on VCPU (evtchn_bind_ipi;
        -ENOENT for a vCPU the domain has not)."""
        self._vcpu(vcpu)
        port = self._free_port()
        self.ports[port] = Port(EvtchnStatus.ipi, vcpu=vcpu)
        return port

    def bind_vcpu(self, port: int, vcpu: int) -> None:
        """EVTCHNOP_bind_vcpu (evtchn_bind_vcpu): -ENOENT for a vCPU the domain has
        not; an unbound or interdomain port, or a global VIRQ's (VIRQ_CONSOLE), may
        notify another vCPU; a per-vCPU VIRQ, an IPI or a closed port is -EINVAL."""
        self._vcpu(vcpu)
        bound = self._port(port)
        rebindable = bound.status in (EvtchnStatus.unbound, EvtchnStatus.interdomain) \
            or bound.status == EvtchnStatus.virq and bound.virq in GLOBAL_VIRQS
        if not rebindable:
            raise HypercallError(Errno.EINVAL, f"port {port} cannot change its vCPU")
        bound.vcpu = vcpu

    def reset(self) -> None:
        """EVTCHNOP_reset (evtchn_reset): every port closed, as evtchn_close closes
        one; the hypervisor's and backends' ends are left unbound."""
        for port in list(self.ports):
            self.close(port)

    def send_virq(self, virq: int, vcpu: int = 0) -> None:
        """Raise VIRQ: a per-vCPU one on VCPU's port, a global one wherever bound."""
        for port, bound in list(self.ports.items()):
            if bound.status == EvtchnStatus.virq and bound.virq == virq \
                    and (virq in GLOBAL_VIRQS or bound.vcpu == vcpu):
                self.set_pending(port)

    def virq_port(self, virq: int, vcpu: int) -> int | None:
        """The port VIRQ is bound to on VCPU, if any."""
        return next((port for port, p in self.ports.items()
                     if p.status == EvtchnStatus.virq and p.virq == virq and p.vcpu == vcpu),
                    None)

    def connect(self, port: int, backend: Backend | None) -> None:
        """Bind (or rebind) PORT to the hypervisor's side (DOMID_XEN), served by
        BACKEND (None: nothing listens yet); for the ports start_info names."""
        self._note_bucket(port)
        self.ports[port] = Port(EvtchnStatus.interdomain, remote_dom=DOMID_XEN,
                                remote_port=port, backend=backend)

    def bind_backend(self, port: int, backend: Backend) -> BackendChannel:
        """A backend in BACKEND_DOMID binds the guest's PORT, which the guest
        allocated unbound for that domain; -EINVAL otherwise, as
        EVTCHNOP_bind_interdomain refuses it (a backend catches HypercallError)."""
        bound = self.ports.get(port)
        if bound is None or bound.status != EvtchnStatus.unbound \
                or bound.remote_dom != BACKEND_DOMID:
            raise HypercallError(Errno.EINVAL, f"port {port} is not unbound for domain "
                                 f"{BACKEND_DOMID}")
        local_port = self._free_backend_port()
        bound = Port(EvtchnStatus.interdomain, remote_dom=BACKEND_DOMID,
                     remote_port=local_port, backend=backend)
        self.ports[port] = bound
        return BackendChannel(self, port, local_port, bound)

    def _free_backend_port(self) -> int:
        used = {p.remote_port for p in self.ports.values()
                if p.status == EvtchnStatus.interdomain and p.remote_dom == BACKEND_DOMID}
        return next(port for port in range(1, len(used) + 2) if port not in used)

    def alloc_unbound(self, dom: int, remote_dom: int) -> int:
        """A port of DOM's (this domain) for REMOTE_DOM to bind; DOMID_SELF as the
        remote is the domain itself (evtchn_alloc_unbound)."""
        if not self.domain.is_named_by(dom):
            raise HypercallError(Errno.EPERM, f"alloc_unbound for domain {dom:#x}")
        if remote_dom == DOMID_SELF:
            remote_dom = self.domain.domid
        port = self._free_port()
        self.ports[port] = Port(EvtchnStatus.unbound, remote_dom=remote_dom)
        return port

    def send(self, port: int) -> None:
        """To the hypervisor's side of an interdomain port: its backend is notified.
        Nothing listens on an unbound port; a VIRQ port cannot be sent on; an IPI
        port raises itself (evtchn_send)."""
        bound = self._port(port)
        if bound.status == EvtchnStatus.virq:
            raise HypercallError(Errno.EINVAL, f"port {port} is a VIRQ")
        if bound.status == EvtchnStatus.interdomain and bound.backend is not None:
            bound.backend.notify()
        if bound.status == EvtchnStatus.ipi:
            self.set_pending(port)  # raised on the vCPU it was bound to

    def unmask(self, port: int) -> None:
        """Clear the mask; a port that is pending raises the upcall now (event_2l.c)."""
        self._port(port)
        self._set_bit(self.shared.mask, port, False)
        if self._bit(self.shared.pending, port):
            self._flag_upcall(port)

    def close(self, port: int) -> None:
        self._port(port)
        del self.ports[port]

    def status(self, port: int) -> tuple[int, int, int]:
        """(status, u0, u1) of evtchn_status: remote (dom, port) or the VIRQ."""
        bound = self.ports.get(port)
        if bound is None:
            return EvtchnStatus.closed, 0, 0
        if bound.status == EvtchnStatus.virq:
            return bound.status, bound.virq, 0
        return bound.status, bound.remote_dom, bound.remote_port

    def notify_vcpu(self, port: int) -> int:
        """evtchn_status.vcpu: the vCPU PORT notifies (0 for a closed port)."""
        bound = self.ports.get(port)
        return 0 if bound is None else bound.vcpu

    # -- time ----------------------------------------------------------------------------
    def now_ns(self) -> int:
        return self.domain.machine.clock.insns * NS_PER_SECOND // VIRTUAL_HZ

    def update_time(self, vcpu: "VCpu | None" = None) -> None:
        """VCPU's (default: the running one's) vcpu_info.time, versioned as Xen does:
        odd while the fields change; and its copy in a registered time area (a
        failed write is the guest's loss, as update_secondary_system_time's)."""
        vcpu = vcpu or self.domain.vcpu
        time = vcpu.info + TIME
        version = self.memory.read_u32(time)
        insns = self.domain.machine.clock.insns
        self.memory.write_u32(time, version + 1 | 1)
        self.memory.write_phys(time + 8, struct.pack("<QQIb", insns, self.now_ns(),
                                                     TSC_TO_SYSTEM_MUL, TSC_SHIFT))
        self.memory.write_u32(time, (version + 1 | 1) + 1)
        if vcpu.time_area is not None:
            with suppress(HypercallError):
                self.domain.copy_to_guest(vcpu.time_area, self.memory.read_phys(
                    time, TIME_INFO_SIZE))

    def write_wall_clock(self) -> None:
        """shared_info's wc_* at boot, versioned as vcpu_info.time is (Xen's
        update_domain_wallclock_time, xen/arch/x86/time.c)."""
        wall_clock = self.shared.wall_clock
        version = self.memory.read_u32(wall_clock)
        self.memory.write_u32(wall_clock, version + 1 | 1)
        self.memory.write_phys(wall_clock + 4, struct.pack("<II", RTC_EPOCH, 0))
        self.memory.write_u32(wall_clock, (version + 1 | 1) + 1)

    def set_timer(self, deadline_ns: int) -> None:
        """set_timer_op: VIRQ_TIMER at DEADLINE_NS of system time; 0 cancels."""
        self.timer_deadline = deadline_ns or None
        self.fire_due_timer()

    def fire_due_timer(self) -> None:
        """Each vCPU's due timers raise its VIRQ_TIMER: the single-shot one once, the
        periodic one again a period later (vcpu_periodic_timer_work); a poll ends
        when its timeout passes or one of its ports is pending."""
        now = self.now_ns()
        for vcpu in self.domain.vcpus:  # on every hypercall's return: cheap when idle
            if vcpu.timer_deadline is not None or vcpu.polling is not None \
                    or vcpu.periodic_next is not None and now >= vcpu.periodic_next:
                self._fire_timers(vcpu, now)

    def _fire_timers(self, vcpu: "VCpu", now: int) -> None:
        single = vcpu.timer_deadline is not None and now >= vcpu.timer_deadline
        periodic = vcpu.periodic_next is not None and now >= vcpu.periodic_next
        if periodic:
            self._periodic_due(vcpu, now)  # the next tick armed
        if single:  # one event for both
            vcpu.timer_deadline = None
            self.update_time(vcpu)
            self.send_virq(Virq.timer, vcpu.id)
        elif periodic:
            self._tick(vcpu)
        if vcpu.polling is not None and (
                any(self.is_pending(port) for port in vcpu.polling)
                or vcpu.poll_deadline is not None and now >= vcpu.poll_deadline):
            vcpu.unblock(now)
            vcpu.polling = vcpu.poll_deadline = None

    # -- the periodic timer ---------------------------------------------------------
    # Xen runs a vCPU's periodic timer only while the vCPU has the CPU (xen/common/
    # sched/core.c: sched_context_switch stops the previous vCPU's and calls
    # vcpu_periodic_timer_work for the next): a vCPU that blocks is not woken by its
    # ticks, and one that gets the CPU a period or more after its last tick gets a
    # tick at once. VCPUOP_set_periodic_timer restarts it (vcpu_set_periodic_timer).
    def set_period(self, vcpu: "VCpu", period_ns: int) -> None:
        """VCPU's periodic timer every PERIOD_NS from now on; 0 stops it for good."""
        vcpu.periodic_period, vcpu.periodic_next = period_ns, None
        if period_ns:
            self.start_periodic(vcpu)

    def start_periodic(self, vcpu: "VCpu") -> None:
        """VCPU gets the CPU: a tick if one is due, and the timer armed for the next."""
        if vcpu.periodic_period and self._periodic_due(vcpu, self.now_ns()):
            self._tick(vcpu)

    @staticmethod
    def pause_periodic(vcpu: "VCpu") -> None:
        """VCPU leaves the CPU (it blocks, goes down or another vCPU runs)."""
        vcpu.periodic_next = None

    @staticmethod
    def _periodic_due(vcpu: "VCpu", now: int) -> bool:
        """vcpu_periodic_timer_work's arithmetic: a tick is due a period after the
        last; when it is, the next is a period from now. Arms the timer."""
        if not vcpu.periodic_period:
            return False
        due = now >= vcpu.periodic_last + vcpu.periodic_period
        if due:
            vcpu.periodic_last = now
        vcpu.periodic_next = vcpu.periodic_last + vcpu.periodic_period
        return due

    def _tick(self, vcpu: "VCpu") -> None:
        """send_timer_event: VIRQ_TIMER, if the vCPU bound it (else nothing at all)."""
        if self.virq_port(Virq.timer, vcpu.id) is not None:
            self.update_time(vcpu)
            self.send_virq(Virq.timer, vcpu.id)

    def insns_to_timer(self, vcpus: "Iterable[VCpu] | None" = None) -> int | None:
        """Instructions until the next timer or poll timeout of VCPUS (default: the
        running one): the run loop's next event."""
        deadlines = [d for vcpu in (vcpus or (self.domain.vcpu,))
                     for d in timer_deadlines(vcpu)]
        return self.insns_until(min(deadlines)) if deadlines else None

    def insns_until(self, deadline_ns: int) -> int:
        """Instructions until system time DEADLINE_NS, at least 1."""
        due = -(-deadline_ns * VIRTUAL_HZ // NS_PER_SECOND)
        return max(due - self.domain.machine.clock.insns, 1)


def timer_deadlines(vcpu: "VCpu") -> list[int]:
    """When VCPU's timers and poll timeout fire next (ns), those it has."""
    return [d for d in (vcpu.timer_deadline, vcpu.periodic_next, vcpu.poll_deadline)
            if d is not None]
