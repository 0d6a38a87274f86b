"""Xen's bounce: how a PV kernel receives an exception, an interrupt or an event
(XEN-ABI.md, "Traps, events, iret"), as rules of the CPU's delivery mechanism
(machine/delivery.py) rather than a copy of it.

The gates are the trap table the kernel registered (set_trap_table), and the event
callback (set_callbacks); the kernel runs in ring 1 and its stack for a bounce from
ring 3 is the TSS's SS0:ESP0 the kernel loaded (or what it gave stack_switch). The
frame is the hardware's with Xen's twist: the saved CS carries the upcall mask in its
upper half, and EFLAGS.IF shows the virtual IF (!mask); the real IF stays set. A gate
that masks events (an interrupt gate's TI_MASK_EVENTS, the event callback) sets the
mask on entry. What Xen cannot deliver (no handler, a bad selector, an unwritable
kernel stack) crashes the domain, as Xen's domain_crash does.
"""

from functools import lru_cache

from pvtool.abi.xen import GUEST_KERNEL_RPL
from pvtool.hv.domain import PvDomain, TrapInfo
from pvtool.hv.errors import DomainCrash, HypercallError
from pvtool.hv.layout import in_glue_window
from pvtool.machine.cpu import CR2
from pvtool.machine.delivery import DeliveryFault, Frame, Gate, enter_same_ring
from pvtool.x86.registers import EFLAGS_IF
from pvtool.x86.vectors import Vector, idt_error_code, vector_name

EVENT_CALLBACK = "the event callback"


@lru_cache(maxsize=1024)  # a trap table's entries are few and frozen: one gate each
def trap_gate(info: TrapInfo) -> Gate:
    """A trap_info entry as a gate."""
    return Gate(info.cs, info.address, info.dpl, clears_if=info.masks_events,
                name=f"the handler of vector {info.vector}")


def event_gate(cs: int, address: int) -> Gate:
    """The event callback as a gate: it always masks events on entry."""
    return Gate(cs, address, dpl=0, clears_if=True, name=EVENT_CALLBACK)


class HypervisedKernel:
    """What the DeliveryRules of a kernel the hypervisor runs in ring 1 share, PV or
    trap-and-emulate: the handler is entered through the trampoline from ring 3 or in
    place, CR2 goes to vcpu_info, and a triple fault crashes the domain."""

    def __init__(self, domain: PvDomain):
        self.domain = domain
        self.vcpu = domain.vcpu

    def enter(self, ring_change: bool, *, cs: int, eip: int, ss: int, esp: int,
              eflags: int) -> None:
        if ring_change:
            self.vcpu.enter_ring(GUEST_KERNEL_RPL, cs=cs, eip=eip, ss=ss, esp=esp,
                                 eflags=eflags)
        else:
            enter_same_ring(self.domain.machine.cpu, cs=cs, eip=eip, esp=esp, eflags=eflags)

    def set_cr2(self, address: int) -> None:
        self.domain.set_cr2(address)

    def switch_task(self, gate: Gate, error_code: int | None, ip: int) -> None:
        raise DomainCrash(f"a task gate to TSS {gate.selector:#x}: the hypervisor does "
                          "not switch tasks")

    def triple_fault(self, why: str, ip: int, address: int | None) -> None:
        raise DomainCrash(f"triple fault after {why}", address)


class XenBounce(HypervisedKernel):
    """The DeliveryRules of a PV domain."""

    def gate(self, vector: int, software: bool, ip: int) -> Gate:
        info = self.domain.trap_table.get(vector)
        if info is not None:
            return trap_gate(info)
        if software:  # raising a vector the guest did not register: #GP(vector:IDT)
            raise DeliveryFault(Vector.GP, idt_error_code(vector),
                                f"int {vector:#x} has no handler")
        address = self.domain.machine.cpu.read(CR2) if vector == Vector.PF else None
        raise DomainCrash(self._undeliverable(vector, ip, address), address)

    def _undeliverable(self, vector: int, ip: int, address: int | None) -> str:
        """Why a fault with no handler crashes the domain. One in pvtool's glue (the
        PV entry before the kernel has a trap table, a stub) is pvtool's to explain,
        not the kernel's trap table."""
        what = vector_name(vector)
        if address is not None:
            what += f" at {address:#x}"
        if self.domain.pagetables.glue and in_glue_window(ip):
            return f"{what} in pvtool's glue"
        return f"{what} at {ip:#010x} and no handler for it (set_trap_table)"

    def ring(self, cpl: int) -> int:
        return cpl

    def handler_cs(self, gate: Gate, cpl: int) -> int:
        if not self.domain.gdt.is_code_selector(gate.selector, GUEST_KERNEL_RPL):
            where = "set_callbacks" if gate.name == EVENT_CALLBACK else "set_trap_table"
            raise DomainCrash(f"{gate.name} has cs {gate.selector:#x}, not a ring-1 code "
                              f"segment ({where})")
        return gate.selector

    def kernel_stack(self, ring: int) -> tuple[int, int]:
        return self.domain.kernel_stack()

    def shown(self, frame: Frame) -> Frame:
        mask = self.domain.upcall_mask
        return Frame(frame.ip, frame.cs | mask << 16,
                     frame.flags & ~EFLAGS_IF | (0 if mask else EFLAGS_IF),
                     frame.error_code, frame.sp, frame.ss)

    def write_stack(self, address: int, data: bytes) -> None:
        try:
            self.domain.copy_to_guest(address, data)
        except HypercallError:
            raise DomainCrash(f"kernel stack {address:#010x} is not writable for a "
                              "bounce frame") from None

    def on_entry(self, flags: int, gate: Gate) -> int:
        if gate.clears_if:
            self.domain.upcall_mask = 1
        return flags | EFLAGS_IF
