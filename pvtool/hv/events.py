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
    from pvtool.hv.domain import Domain

TIME = layout.VCPU0 + layouts.VCPU_INFO.offset("time_version")  # at 32 in either width
NS_PER_SECOND = 1_000_000_000
# ns = (tsc << 4) * 0xA0000000 >> 32 = tsc * 10: one instruction is 10 ns at 100 MHz.
TSC_SHIFT = 4
TSC_TO_SYSTEM_MUL = (NS_PER_SECOND // VIRTUAL_HZ << 32) >> TSC_SHIFT
BOUND_VIRQS = frozenset({Virq.timer, Virq.debug, Virq.console})
GLOBAL_VIRQS = frozenset({Virq.console})  # the rest are per-vCPU (virq_is_global)


@dataclass(frozen=True)
class SharedInfoAddresses:
    """Where the pending and mask bitmaps, vCPU 0's selector word and the wall clock
    are in the hypervisor's shared_info page for a guest of one width: Xen's words
    are unsigned longs (xen.h), so on x86-64 the selector is 8 bytes and the mask and
    wall clock move."""

    pending: int
    mask: int
    pending_sel: int
    word_bits: int
    wall_clock: int


def _addresses(shared: layouts.Layout, vcpu: layouts.Layout, word_bits: int):
    return SharedInfoAddresses(
        layout.SHARED_INFO + shared.offset("evtchn_pending"),
        layout.SHARED_INFO + shared.offset("evtchn_mask"),
        layout.VCPU0 + vcpu.offset("evtchn_pending_sel"), word_bits,
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
        self.timer_deadline: int | None = None  # ns of system time, set_timer_op
        self.polling: frozenset[int] | None = None  # SCHEDOP_poll's ports while it waits
        self.poll_deadline: int | None = None  # ns: when the poll times out

    # -- the bitmaps -------------------------------------------------------------------
    def _bit(self, base: int, port: int) -> bool:
        return bool(self.memory.read_phys(base + port // 8, 1)[0] >> (port % 8) & 1)

    def _set_bit(self, base: int, port: int, value: bool) -> None:
        byte = self.memory.read_phys(base + port // 8, 1)[0]
        bit = 1 << (port % 8)
        self.memory.write_phys(base + port // 8, bytes((byte | bit if value else byte & ~bit,)))

    def is_pending(self, port: int) -> bool:
        return self._bit(self.shared.pending, port)

    def set_pending(self, port: int) -> None:
        """Xen's evtchn_2l_set_pending: mark PORT and, unless it is masked, flag its
        word in the selector and the vCPU's upcall."""
        if self._bit(self.shared.pending, port):
            return
        self._set_bit(self.shared.pending, port, True)
        self._flag_upcall(port)

    def _flag_upcall(self, port: int) -> None:
        shared = self.shared
        if self._bit(shared.mask, port):
            return
        self._set_bit(shared.pending_sel, port // shared.word_bits, True)
        self.domain.upcall_pending = 1

    def work_pending(self) -> bool:
        """An upcall the event callback should take: flagged and some word selected."""
        shared = self.shared
        return bool(self.domain.upcall_pending and any(
            self.memory.read_phys(shared.pending_sel, shared.word_bits // 8)))

    # -- the operations (EVTCHNOP_*) -----------------------------------------------------
    def _port(self, port: int) -> Port:
        found = self.ports.get(port)
        if found is None:
            raise HypercallError(Errno.EINVAL, f"event channel {port} is not bound")
        return found

    def _free_port(self) -> int:
        for port in range(1, NR_EVENT_CHANNELS_32):
            if port not in self.ports:
                return port
        raise HypercallError(Errno.ENOSPC, "no free event channel")

    def bind_virq(self, virq: int, vcpu: int) -> int:
        if virq not in BOUND_VIRQS:
            raise HypercallError(Errno.EINVAL, f"VIRQ {virq}")
        if vcpu != 0:
            raise HypercallError(Errno.ENOENT, f"vcpu {vcpu}: the domain has one")
        if any(p.status == EvtchnStatus.virq and p.virq == virq for p in self.ports.values()):
            raise HypercallError(Errno.EEXIST, f"VIRQ {virq} is bound already")
        port = self._free_port()
        self.ports[port] = Port(EvtchnStatus.virq, virq=virq)
        return port

    def bind_ipi(self, vcpu: int) -> int:
        """EVTCHNOP_bind_ipi: a port that raises itself on VCPU (evtchn_bind_ipi;
        -ENOENT for a vCPU the domain has not, and it has one)."""
        if vcpu != 0:
            raise HypercallError(Errno.ENOENT, f"vcpu {vcpu}: the domain has one")
        port = self._free_port()
        self.ports[port] = Port(EvtchnStatus.ipi)
        return port

    def bind_vcpu(self, port: int, vcpu: int) -> None:
        """EVTCHNOP_bind_vcpu (evtchn_bind_vcpu): -ENOENT for a vCPU the domain has
        not; an unbound or interdomain port, or a global VIRQ's (VIRQ_CONSOLE), may
        notify another vCPU; a per-vCPU VIRQ, an IPI or a closed port is -EINVAL. With
        one vCPU a rebinding to vCPU 0 changes nothing."""
        if vcpu != 0:
            raise HypercallError(Errno.ENOENT, f"vcpu {vcpu}: the domain has one")
        bound = self._port(port)
        rebindable = bound.status in (EvtchnStatus.unbound, EvtchnStatus.interdomain) \
            or bound.status == EvtchnStatus.virq and bound.virq in GLOBAL_VIRQS
        if not rebindable:
            raise HypercallError(Errno.EINVAL, f"port {port} cannot change its vCPU")

    def reset(self) -> None:
        """EVTCHNOP_reset (evtchn_reset): every port closed, as evtchn_close closes
        one; the hypervisor's and backends' ends are left unbound."""
        for port in list(self.ports):
            self.close(port)

    def send_virq(self, virq: int) -> None:
        for port, bound in self.ports.items():
            if bound.status == EvtchnStatus.virq and bound.virq == virq:
                self.set_pending(port)

    def connect(self, port: int, backend: Backend | None) -> None:
        """Bind (or rebind) PORT to the hypervisor's side (DOMID_XEN), served by
        BACKEND (None: nothing listens yet); for the ports start_info names."""
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
            self.set_pending(port)  # an IPI to its own (the only) vCPU

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

    # -- time ----------------------------------------------------------------------------
    def now_ns(self) -> int:
        return self.domain.machine.clock.insns * NS_PER_SECOND // VIRTUAL_HZ

    def update_time(self) -> None:
        """vcpu_info.time, versioned as Xen does: odd while the fields change."""
        version = self.memory.read_u32(TIME)
        insns = self.domain.machine.clock.insns
        self.memory.write_u32(TIME, version + 1 | 1)
        self.memory.write_phys(TIME + 8, struct.pack("<QQIb", insns, self.now_ns(),
                                                     TSC_TO_SYSTEM_MUL, TSC_SHIFT))
        self.memory.write_u32(TIME, (version + 1 | 1) + 1)

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
        """VIRQ_TIMER if the timer is due; a poll ends when its timeout passes or one
        of its ports is pending."""
        now = self.now_ns()
        if self.timer_deadline is not None and now >= self.timer_deadline:
            self.timer_deadline = None
            self.update_time()
            self.send_virq(Virq.timer)
        if self.polling is not None and (
                any(self.is_pending(port) for port in self.polling)
                or self.poll_deadline is not None and now >= self.poll_deadline):
            self.polling = self.poll_deadline = None

    def insns_to_timer(self) -> int | None:
        """Instructions until the timer or a poll's timeout (the run loop's next event)."""
        deadlines = [d for d in (self.timer_deadline, self.poll_deadline) if d is not None]
        if not deadlines:
            return None
        due = -(-min(deadlines) * VIRTUAL_HZ // NS_PER_SECOND)
        return max(due - self.domain.machine.clock.insns, 1)
