"""What every interrupt and exception means to a PV domain: the hypervisor's
supervisor of the CPU.

`int 0x82` from the kernel is a hypercall; an int3 on a recorded trap site is an
instruction the patch left for the hypervisor to emulate; a #GP on an unpatched
privileged instruction (and Xen's forced-emulation cpuid) is emulated as Xen does; a
kernel store into its own page tables is validated and emulated (ptwr); everything else
is bounced to the guest's handler from its trap table (hv/bounce.py). Events and
device interrupts are delivered between slices and on the way back from a hypercall.
"""

from pvtool.abi.xen import GUEST_KERNEL_RPL, HYPERCALL_VECTOR_32, CallbackType
from pvtool.hv.bounce import XenBounce, event_gate
from pvtool.hv.breakpoints import Breakpoints
from pvtool.hv.debugreg import DR6_SINGLE_STEP
from pvtool.hv.domain import Domain, PvDomain, VCpu
from pvtool.hv.emulate import Emulator
from pvtool.hv.errors import DomainCrash
from pvtool.hv.hypercalls import QUIET, call
from pvtool.hv.hypercalls.common import NO_RESULT
from pvtool.hv.ioports import io_okay
from pvtool.hv.layout import in_glue_window
from pvtool.hv.ptwr import handle_write_fault
from pvtool.machine.cpu import CR2, EIP
from pvtool.machine.delivery import Delivery
from pvtool.machine.exits import Exit
from pvtool.machine.fast_call import FastCall
from pvtool.machine.interruption import Interruption, Kind, external, from_intr_hook
from pvtool.machine.irq import IrqRouter
from pvtool.x86.vectors import Vector

# Read on every hypercall: an enum member's lookup costs more than a global's.
HYPERCALL_EXIT = Exit.HYPERCALL
PTWR_EXIT = Exit.PTWR
EVENT_CALLBACK = int(CallbackType.event)


def take_page_fault(domain: Domain, event: Interruption, kernel: bool) -> bool:
    """A #PF the hypervisor takes for itself: a kernel store into its page tables
    (writable page tables, hv/ptwr.py). Otherwise False, its address in vcpu_info's
    CR2, for the guest's handler to read."""
    return take_page_fault_at(domain, event.ip, event.error_code, kernel)


def take_page_fault_at(domain: Domain, ip: int, error_code: int, kernel: bool) -> bool:
    """take_page_fault for the #PF with ERROR_CODE at IP, with no Interruption made."""
    address = domain.machine.cpu.read(CR2)
    if kernel and handle_write_fault(domain, address, error_code):
        domain.machine.exits[PTWR_EXIT] += 1
        return True
    if kernel and _into_glue_alias(domain, address, ip):
        domain.machine.exits[Exit.GLUE_ALIAS] += 1
        return True
    domain.set_cr2(address)
    return False


def _into_glue_alias(domain: Domain, address: int, ip: int) -> bool:
    """A patched higher-half kernel that runs at its physical addresses (paging "off",
    or just turned on) reaches the glue with jumps and calls linked at its link
    address, which land VIRT_BASE below the glue window; a return into a stub so
    reached does too. Fetched there, the glue continues in the window itself, where
    every address space maps it (docs/ABI.md)."""
    target = (address + domain.glue_alias) & 0xFFFFFFFF
    if not domain.glue_alias or address != ip or not in_glue_window(target):
        return False
    domain.vcpu.set(EIP, target)
    return True


class PvSupervisor:
    direct_vector = HYPERCALL_VECTOR_32  # the hypercall's: no Interruption made for it

    def __init__(self, domain: PvDomain, emulator: Emulator):
        self.domain = domain
        self.machine = domain.machine
        self.cpu = domain.machine.cpu  # one CPU, whichever vCPU runs on it
        self.emulator = emulator
        self.exits = domain.machine.exits
        self.delivery = Delivery(domain.machine.cpu, XenBounce(domain), self.exits)
        domain.breakpoints = Breakpoints(domain, self.raise_debug)
        # Every vCPU reads and writes the one CPU's registers the same way.
        self._hypercall_registers = domain.vcpu.hypercall_registers
        self._set_result = domain.vcpu.set_result
        # Whether a device may have raised an interrupt line since the last look (see
        # _on_return): a port was accessed, or one was left waiting.
        self._devices_may_interrupt = True

    @property
    def vcpu(self) -> VCpu:
        """The vCPU on the CPU (hv/scheduler.py changes it between slices)."""
        return self.domain.vcpu

    def on_interruption(self, event: Interruption) -> None:
        try:
            if event.software:
                self._software_interrupt(event)
            else:
                self._exception(event)
        except DomainCrash as crash:
            self.domain.crash(crash.reason, crash.address)

    def on_direct_vector(self) -> None:
        """`int 0x82`, the hot path: no EIP, no decoding, and the ring from CS, which
        in a PV domain always equals the CPL (every ring change is an iretd loading CS;
        same-ring CS writes keep its RPL), read in the same unpack as the rest. CS, the
        number and the arguments come in one read of the CPU's state,
        the result goes back in one write. From ring 3 it is an `int n` like any
        other, bounced as its trap-table entry's DPL allows."""
        try:
            registers = self._hypercall_registers()
            if registers[0] & 3 != GUEST_KERNEL_RPL:
                self.on_interruption(from_intr_hook(self.machine.cpu, self.domain.memory,
                                                    HYPERCALL_VECTOR_32))
                return
            self.exits[HYPERCALL_EXIT] += 1
            number, domain = registers[1], self.domain
            result = call(domain, domain.vcpu, number, registers[2:])
            if result is not NO_RESULT:
                self._set_result(result)
            if self.machine.stop is None:
                self._on_return(number)
        except DomainCrash as crash:
            self.domain.crash(crash.reason, crash.address)

    def _on_return(self, number: int) -> None:
        """Xen delivers on the way back from a hypercall: a pending event, then a
        device interrupt. Timers are due only when hypercall NUMBER may have armed
        one (a QUIET one cannot: hv/hypercalls). A device raises a line only when a
        port is accessed (a PV domain maps no MMIO) or as time passes, between slices,
        where take_interrupt looks anyway; so the devices are asked only after a port
        access, or while an interrupt waits for the virtual IF. Together that is what
        keeps a hypercall's return cheap."""
        dom = self.domain
        if number not in QUIET:
            dom.events.fire_due_timer()
        if dom.vcpu.callbacks:  # none registered: no event can be delivered
            self._deliver_event()
        if self._devices_may_interrupt:
            self._take_device_interrupt(self.machine.irqs)

    def _software_interrupt(self, event: Interruption) -> None:
        # A trap site stands for a kernel instruction: from ring 3 it is a plain int3.
        site = event.ip - 1
        if event.vector == Vector.BP and self.cpu.cpl == GUEST_KERNEL_RPL \
                and self.emulator.is_trap_site(site):
            self.exits[Exit.TRAP_SITE] += 1
            self.emulator.emulate_trap_site(site)
            return
        self._bounce(event)

    def _exception(self, event: Interruption) -> None:
        # Privileged instructions are emulated for the kernel only: from ring 3 they
        # are the kernel's #GP to handle, as on Xen. The forced-emulation prefix is
        # honoured in any ring (xen/arch/x86/pv/emul-inv-op.c: do_invalid_op tries it
        # for every PV guest mode).
        kernel = self.cpu.cpl == GUEST_KERNEL_RPL  # hflags in place: no context save
        vector, ip = event.vector, event.ip
        if vector == Vector.UD and self.emulator.forced_cpuid(ip) \
                or kernel and vector == Vector.GP and self.emulator.emulate_privileged(ip):
            self.exits[Exit.EMULATED] += 1
            return
        if vector == Vector.DB:  # Unicorn's own #DB: EFLAGS.TF's single step
            self.domain.debug_registers.record_hits(DR6_SINGLE_STEP)
        self._bounce(event)

    def on_page_fault(self, ip: int, error_code: int) -> None:
        """A #PF at IP, straight from the hook (Machine._on_intr), the path of every
        kernel store into its page tables: taken here (hv/ptwr.py) with no
        Interruption made, as a hypercall is; any other #PF is bounced."""
        try:
            kernel = self.cpu.cpl == GUEST_KERNEL_RPL
            if not take_page_fault_at(self.domain, ip, error_code, kernel):
                self._bounce(Interruption(Vector.PF, Kind.EXCEPTION, ip, error_code))
        except DomainCrash as crash:
            self.domain.crash(crash.reason, crash.address)

    def raise_debug(self, ip: int) -> None:
        """A breakpoint fired (hv/breakpoints.py, DR6 already records it): #DB for
        the guest's handler, EIP = IP."""
        try:
            self._bounce(Interruption(Vector.DB, Kind.EXCEPTION, ip=ip))
        except DomainCrash as crash:
            self.domain.crash(crash.reason, crash.address)

    def _bounce(self, event: Interruption) -> None:
        """Deliver EVENT to the guest's handler; --trace says which, from where."""
        if self.domain.trace:
            error = "" if event.error_code is None else f" error {event.error_code:#x}"
            self.domain.log(f"bounce {_vector_name(event.vector)}{error} at {event.ip:#x}")
        self.delivery.deliver(event)

    # -- what the run loop asks -----------------------------------------------------
    def interrupts_enabled(self) -> bool:
        """The virtual IF: events are delivered while the upcall mask is clear (and a
        SCHEDOP_poll waits for its ports whatever the mask)."""
        return not self.domain.upcall_mask or self.domain.events.polling is not None

    def take_interrupt(self, irqs: IrqRouter) -> None:
        """Before each slice: the vCPU's periodic timer runs again if it was off the
        CPU (hv/events.py), due timers fire, a pending event is delivered, then a
        device interrupt."""
        try:
            vcpu = self.domain.vcpu
            if vcpu.periodic_next is None and vcpu.periodic_period:
                self.domain.events.start_periodic(vcpu)
            if vcpu.nmi_pending:
                self._take_nmi()
            self._take_event()
            self._take_device_interrupt(irqs)
        except DomainCrash as crash:
            self.domain.crash(crash.reason, crash.address)

    def _take_event(self) -> None:
        """Due timers fire, then a pending event is delivered (_deliver_event)."""
        self.domain.events.fire_due_timer()
        self._deliver_event()

    def _deliver_event(self) -> None:
        """Xen's upcall: with a port pending and unmasked (evtchn_upcall_pending) and
        the upcall mask clear, bounce to the event callback with the exception frame;
        the mask is set on entry, and HYPERVISOR_iret with IF set clears it."""
        dom = self.domain
        callback = dom.vcpu.callbacks.get(EVENT_CALLBACK)
        # evtchn_upcall_pending first: clear most of the time, one read of guest memory
        if callback is None or not dom.upcall_pending or dom.upcall_mask \
                or not dom.events.work_pending():
            return
        cs, address, _ = callback
        self.exits[Exit.UPCALL] += 1
        if dom.trace:
            dom.log(f"event upcall to {address:#x} at {self.vcpu.eip:#x}")
        dom.events.update_time()
        self.delivery.enter_callback(event_gate(cs, address), self.vcpu.eip,
                                     self.domain.machine.cpu.cpl)

    def _take_nmi(self) -> None:
        """VCPUOP_send_nmi's NMI, through the trap table's vector 2 (pv_raise_nmi);
        dropped with no handler there."""
        vcpu = self.vcpu
        vcpu.nmi_pending = False
        if self._has_handler(Vector.NMI):  # a 64-bit vCPU's table is its own (entry64.py)
            self._bounce(external(Vector.NMI, vcpu.eip))

    def _take_device_interrupt(self, irqs: IrqRouter) -> None:
        """A device interrupt reaches a PV kernel as a virtual interrupt: while one
        waits, vcpu_info.evtchn_upcall_pending is set (so a stub's sti sees it), and
        when the virtual IF allows, it is bounced through the trap table like the
        exception its IDT gate stood for (docs/ABI.md)."""
        dom = self.domain
        if not irqs.pending():
            self._devices_may_interrupt = False
            return
        if dom.vcpu.id != 0:  # device interrupts are vCPU 0's
            return
        self._devices_may_interrupt = True
        dom.upcall_pending = 1
        if dom.upcall_mask:
            return
        vector = irqs.acknowledge()
        dom.upcall_pending = int(irqs.pending())
        if not self._has_handler(vector):
            self.exits[Exit.IRQ_DROPPED] += 1
            return
        self._bounce(external(vector, self.vcpu.eip))

    def _has_handler(self, vector: int) -> bool:
        """Whether set_trap_table gave VECTOR a handler (a 32-bit domain's table)."""
        return vector in self.domain.trap_table

    def insns_to_next_event(self) -> int | None:
        if self.domain.scheduler.active:
            return self.domain.scheduler.insns_to_next_event()
        return self.domain.events.insns_to_timer()

    def on_fast_call(self, call: FastCall) -> None:
        """`syscall` and `sysenter` do nothing here, as they did before the machine
        reported them: the 32-bit PV ABI's system calls are `int 0x80` and its
        hypercalls `int 0x82` (XEN-ABI.md); the 64-bit ABI's routing is hv64entry's."""

    def port_allowed(self, port: int, size: int) -> bool:
        """Port I/O reaches the devices only with I/O privilege as Xen grants it
        (hv/ioports.py); the machine raises #GP(0) for the rest."""
        self._devices_may_interrupt = True
        dom = self.domain
        if dom.iopl == 3:  # every ring may: no need to know which one runs
            return True
        allowed = io_okay(dom, port, size, self.vcpu.cpl)
        if not allowed and dom.trace:
            dom.log(f"port {port:#x}: no I/O privilege at ring {self.vcpu.cpl}: #GP(0)")
        return allowed


def _vector_name(vector: int) -> str:
    """#GP, #PF... for the exceptions, the number for the rest (hex, as int 0x80)."""
    try:
        return f"#{Vector(vector).name}"
    except ValueError:
        return f"vector {vector:#x}"
