"""What every interrupt and exception means to a PV domain.

Unicorn reports every `int n` and fault to the machine's INTR hook; for a PV domain
this handler decides: `int 0x82` from the kernel is a hypercall; an int3 on a recorded
trap site is an instruction the patch left for the hypervisor to emulate; a #GP on an
unpatched privileged instruction is emulated as Xen does; everything else is bounced
to the guest's handler from its trap table with Xen's frame (XEN-ABI.md, "Traps,
events, iret").
"""

import struct

from pvtool.abi.xen import GUEST_KERNEL_RPL, HYPERCALL_VECTOR_32, CallbackType
from pvtool.hv.domain import TrapInfo
from pvtool.hv.errors import DomainCrash, HypercallError
from pvtool.hv.hypercalls import dispatch
from pvtool.hv.ptwr import handle_write_fault
from pvtool.machine.cpu import CR2, CS, EFLAGS, EIP, ESP, SS
from pvtool.machine.exits import Exit
from pvtool.machine.interrupts import is_software_interrupt
from pvtool.machine.memory import PageFault
from pvtool.x86.registers import EFLAGS_IF, EFLAGS_NT, EFLAGS_RF, EFLAGS_TF
from pvtool.x86.vectors import ERROR_CODE, Vector, idt_error_code, vector_name

EVENT_UPCALL = 256  # not a vector: names the event callback in push_frame's messages
INT_IMM8 = 0xCD


class PvTrapHandler:
    def __init__(self, domain, emulator):
        self.domain = domain
        self.vcpu = domain.vcpu
        self.emulator = emulator
        self.exits = domain.machine.exits

    def on_interrupt(self, vector: int) -> None:
        try:
            self._route(vector)
        except DomainCrash as crash:
            self.domain.crash(crash.reason)

    def interrupts_enabled(self) -> bool:
        """The virtual IF: events are delivered while the upcall mask is clear (and a
        SCHEDOP_poll waits for its ports whatever the mask)."""
        events = self.domain.events
        return not self.domain.upcall_mask or events is not None and events.polling is not None

    def take_interrupt(self, pic) -> None:
        """Between slices and after every hypercall: due timers fire, a pending event
        is delivered, then a device interrupt."""
        try:
            self._take_event()
        except DomainCrash as crash:
            self.domain.crash(crash.reason)
            return
        self._take_device_interrupt(pic)

    def _take_event(self) -> None:
        """Xen's upcall: with a port pending and unmasked (evtchn_upcall_pending) and
        the upcall mask clear, bounce to the event callback with the exception frame;
        the mask is set on entry, and HYPERVISOR_iret with IF set clears it."""
        dom = self.domain
        if dom.events is None:
            return
        dom.events.fire_due_timer()
        callback = dom.callbacks.get(CallbackType.event)
        if callback is None or dom.upcall_mask or not dom.events.work_pending():
            return
        cs, address, _ = callback
        self.exits[Exit.UPCALL] += 1
        dom.events.update_time()
        self.push_frame(TrapInfo(vector=EVENT_UPCALL, dpl=0, masks_events=True, cs=cs,
                                 address=address), None, self.vcpu.eip)

    def _take_device_interrupt(self, pic) -> None:
        """A device interrupt reaches a PV kernel as a virtual interrupt: while one
        waits, vcpu_info.evtchn_upcall_pending is set (so a stub's sti sees it), and
        when the virtual IF allows, it is bounced through the trap table like the
        exception its IDT gate stood for (docs/ABI.md)."""
        dom = self.domain
        if not pic.pending():
            return
        dom.upcall_pending = 1
        if dom.upcall_mask:
            return
        vector = pic.acknowledge()
        dom.upcall_pending = int(pic.pending())
        info = dom.trap_table.get(vector)
        if info is None:
            self.exits[Exit.IRQ_DROPPED] += 1
            return
        self.exits[Exit.IRQ] += 1
        self.push_frame(info, None, self.vcpu.eip)

    def _route(self, vector: int) -> None:
        # The hot path: no EIP, no decoding, and the ring from CS, which in a PV domain
        # always equals the CPL (every ring change is an iretd loading CS; same-ring CS
        # writes keep its RPL), where the CPU context's hflags would cost a save.
        if vector == HYPERCALL_VECTOR_32 and self.vcpu.cs & 3 == GUEST_KERNEL_RPL:
            self._hypercall()
            return
        eip = self.vcpu.eip
        if is_software_interrupt(self.domain.memory, vector, eip):
            self._software_interrupt(vector, eip)
            return
        error_code = self.domain.machine.cpu.fault_error_code() \
            if vector in ERROR_CODE else None
        self.vcpu.ack_exception()
        self.exits[Exit.EXCEPTION] += 1
        if vector == Vector.UD and self.vcpu.cpl == 1 and self.emulator.forced_cpuid(eip):
            self.exits[Exit.EMULATED] += 1
            return
        # Privileged instructions are emulated for the kernel only: from ring 3 they
        # are the kernel's #GP to handle, as on Xen.
        if vector == Vector.GP and self.vcpu.cpl == 1 \
                and self.emulator.emulate_privileged(eip):
            self.exits[Exit.EMULATED] += 1
            return
        if vector == Vector.PF:
            address = self.domain.machine.cpu.read(CR2)
            if self.vcpu.cpl == 1 and handle_write_fault(self.domain, address, error_code):
                return
            self.domain.set_cr2(address)
        self.bounce(vector, error_code, eip)

    def _hypercall(self) -> None:
        self.exits[Exit.HYPERCALL] += 1
        dispatch(self.domain, self.vcpu)
        if self.domain.machine.stop is None:
            self.take_interrupt(self.domain.machine.pic)  # Xen delivers on return

    def _software_interrupt(self, vector: int, eip: int) -> None:
        # A trap site stands for a kernel instruction: from ring 3 it is a plain int3.
        if vector == Vector.BP and self.vcpu.cpl == 1 and self.emulator.is_trap_site(eip - 1):
            self.exits[Exit.TRAP_SITE] += 1
            self.emulator.emulate_trap_site(eip - 1)
            return
        self.exits[Exit.INTERRUPT] += 1
        info = self.domain.trap_table.get(vector)
        if info is None or info.dpl < self.vcpu.cpl:
            # Raising a vector the guest did not allow at this ring: #GP(vector:IDT),
            # at the instruction: `int n` is two bytes, int3 and into one.
            self.bounce(Vector.GP, idt_error_code(vector), eip - self._int_length(vector, eip))
            return
        self.bounce(vector, None, eip)

    def _int_length(self, vector: int, eip: int) -> int:
        if vector not in (Vector.BP, Vector.OF):
            return 2
        try:
            before = self.domain.memory.read_virt((eip - 2) & 0xFFFFFFFF, 2)
        except PageFault:
            return 1
        return 2 if before == bytes((INT_IMM8, vector)) else 1

    def bounce(self, vector: int, error_code: int | None, return_eip: int) -> None:
        """Deliver VECTOR to the guest kernel's handler with Xen's 32-bit frame:
        [error code,] EIP, CS | saved_upcall_mask << 16, EFLAGS (IF = !mask), and ESP,
        SS when it came from ring 3 (then on the kernel stack)."""
        info = self.domain.trap_table.get(vector)
        if info is None:
            raise DomainCrash(f"{vector_name(vector)} at {return_eip:#010x} and no handler for it "
                              "(set_trap_table)")
        self.push_frame(info, error_code, return_eip)

    def push_frame(self, info: TrapInfo, error_code: int | None, return_eip: int) -> None:
        dom, vcpu = self.domain, self.vcpu
        if not dom.gdt.is_code_selector(info.cs, 1):
            what = ("the event callback", "set_callbacks") if info.vector == EVENT_UPCALL \
                else (f"the handler of vector {info.vector}", "set_trap_table")
            raise DomainCrash(f"{what[0]} has cs {info.cs:#x}, "
                              f"not a ring-1 code segment ({what[1]})")
        from_user = vcpu.cpl == 3
        mask = dom.upcall_mask
        saved_eflags = vcpu.eflags & ~EFLAGS_IF | (0 if mask else EFLAGS_IF)
        frame = [return_eip, vcpu.cs | mask << 16, saved_eflags]
        if from_user:
            ss, sp = dom.kernel_stack()
            frame += [vcpu.esp, vcpu.get(SS)]
        else:
            ss, sp = vcpu.get(SS), vcpu.esp
        if error_code is not None:
            frame.insert(0, error_code)
        esp = (sp - 4 * len(frame)) & 0xFFFFFFFF
        try:
            dom.copy_to_guest(esp, struct.pack(f"<{len(frame)}I", *frame))
        except HypercallError:
            raise DomainCrash(f"kernel stack {esp:#010x} is not writable while bouncing "
                              f"vector {info.vector}") from None
        if info.masks_events:
            dom.upcall_mask = 1
        eflags = vcpu.eflags & ~(EFLAGS_TF | EFLAGS_NT | EFLAGS_RF) | EFLAGS_IF
        if from_user:
            vcpu.enter_ring(1, cs=info.cs, eip=info.address, ss=ss, esp=esp, eflags=eflags)
            return
        vcpu.set(ESP, esp)
        vcpu.set(EFLAGS, eflags)
        if info.cs != vcpu.cs:
            vcpu.set(CS, info.cs)
        vcpu.set(EIP, info.address)
