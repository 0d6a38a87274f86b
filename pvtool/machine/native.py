"""The bare PC's CPU: every interrupt and exception goes through the guest's own IDT,
GDT and TSS exactly as the hardware delivers it (machine/delivery.py; a task gate
switches tasks, machine/taskswitch.py), with the kernel in ring 0. This is native
mode's supervisor, and the reference the others are measured against.

An NMI (the local APIC's NMI delivery) goes through vector 2 whatever IF says, and
blocks further NMIs until the next iret executes (SDM 6.7.1, "Handling Multiple
NMIs"), which the machine watches for instruction by instruction while the handler
runs. An NMI raised in the middle of a slice ends it, so it is taken at the next
instruction, as QEMU takes it. Departure: `hlt` with IF clear ends the run even if an
NMI could still come (only an I/O APIC entry in NMI mode could send one later).
"""

from pathlib import Path

from pvtool.machine.context import DESC_DPL_SHIFT, SS_INDEX
from pvtool.machine.cpu import CR2, CS, GDTR, IDTR, RFLAGS, RIP, RSP, SS, Cpu, SegmentCache
from pvtool.machine.delivery import (
    Delivery,
    DeliveryFault,
    Frame,
    Gate,
    enter_same_ring,
    read_guest,
    read_idt_gate,
    read_tss64_stack,
    read_tss_stack,
    write_guest,
)
from pvtool.machine.fast_call import FastCall
from pvtool.machine.fast_entry import FastEntry
from pvtool.machine.interruption import Interruption, external
from pvtool.machine.irq import IrqRouter
from pvtool.machine.loader import KernelImage, load_multiboot
from pvtool.machine.memory import GuestMemory
from pvtool.machine.pc import Machine
from pvtool.machine.stop import Stop, StopKind
from pvtool.machine.taskswitch import RingNotModeled, switch_through_gate
from pvtool.x86.descriptors import DESCRIPTOR_SIZE, SegmentDescriptor, gdt_offset
from pvtool.x86.registers import EFLAGS_IF
from pvtool.x86.tss import TSS64_IST1, TSS64_RSP0
from pvtool.x86.vectors import Vector


class BareCpuRules:
    """The hardware's own rules (DeliveryRules). Only ring-0 handlers are reached with
    a stack switch: a PC kernel's case, and the only privilege pvtool can raise a
    running CPU to from a hook (UNICORN.md)."""

    def __init__(self, cpu: Cpu, memory: GuestMemory, request_stop):
        self.cpu = cpu
        self.memory = memory
        self.request_stop = request_stop

    def gate(self, vector: int, software: bool, ip: int) -> Gate:
        base, limit = self.cpu.descriptor_table(IDTR)
        bits = 64 if self.cpu.long_mode else 32
        return read_idt_gate(self.memory.read_virt, base, limit, vector, bits)

    def ring(self, cpl: int) -> int:
        return cpl

    def handler_cs(self, gate: Gate, cpl: int) -> int:
        descriptor = self._descriptor(gate.selector)
        target = descriptor.dpl
        if target > cpl or (target < cpl and target != 0):
            raise DeliveryFault(Vector.GP, gate.selector & ~3,
                                f"the handler's segment {gate.selector:#x} is ring {target}")
        if self.cpu.long_mode and (not descriptor.long or descriptor.db):
            raise DeliveryFault(Vector.GP, gate.selector & ~3, f"the handler's segment "
                                f"{gate.selector:#x} is not 64-bit code (6.14.1)")
        return gate.selector & ~3 | target

    def _descriptor(self, selector: int) -> SegmentDescriptor:
        """The descriptor SELECTOR names in the GDT."""
        gdt_base, gdt_limit = self.cpu.descriptor_table(GDTR)
        offset = gdt_offset(selector, gdt_limit)
        if offset is None:
            raise DeliveryFault(Vector.GP, selector & ~3,
                                f"selector {selector:#x} is not in the GDT")
        raw = read_guest(self.memory.read_virt, gdt_base + offset, DESCRIPTOR_SIZE)
        return SegmentDescriptor.decode(raw)

    def kernel_stack(self, ring: int) -> tuple[int, int]:
        """The TSS's stack for RING; in long mode SS is the null selector with the new
        CPL as its RPL (6.14.4)."""
        if self.cpu.long_mode:
            rsp = read_tss64_stack(self.memory.read_virt, self.cpu.task_segment(),
                                   TSS64_RSP0 + 8 * ring)
            return ring, rsp
        _, tss = self.cpu.task_register()
        return read_tss_stack(self.memory.read_virt, tss)

    def interrupt_stack(self, ist: int) -> int:
        return read_tss64_stack(self.memory.read_virt, self.cpu.task_segment(),
                                TSS64_IST1 + 8 * (ist - 1))

    def shown(self, frame: Frame) -> Frame:
        return frame

    def write_stack(self, address: int, data: bytes) -> None:
        write_guest(self.memory.write_virt, address, data)

    def on_entry(self, flags: int, gate: Gate) -> int:
        return flags & ~EFLAGS_IF if gate.clears_if else flags

    def enter(self, ring_change: bool, *, cs: int, eip: int, ss: int, esp: int,
              eflags: int) -> None:
        cpu = self.cpu
        if cpu.bits == 64 and (ring_change or cs != cpu.read(CS) or ss != cpu.read(SS)):
            self._load_caches(cs, ss, ring_change)
            for reg, value in ((RSP, esp), (RFLAGS, eflags), (RIP, eip)):
                cpu.write(reg, value)
        elif ring_change:
            cpu.enter_ring0(cs=cs, ss=ss, esp=esp, eip=eip, eflags=eflags)
        else:
            enter_same_ring(cpu, cs=cs, eip=eip, esp=esp, eflags=eflags)

    def _load_caches(self, cs: int, ss: int, ring_change: bool) -> None:
        """A 64-bit CPU's segment writes load no descriptor (UNICORN.md): CS's comes
        from the GDT, and on a ring change SS's too; in long mode SS is then null, its
        cache holding only the new CPL (QEMU's do_interrupt64)."""
        cpu = self.cpu
        code = SegmentCache.of(cs, self._descriptor(cs))
        if cpu.long_mode and ss & ~3 == 0:
            stack = SegmentCache(ss, 0, 0, (cs & 3) << DESC_DPL_SHIFT)
        elif ring_change:
            stack = SegmentCache.of(ss, self._descriptor(ss))
        else:
            stack = cpu.segment(SS_INDEX)
        cpu.load_segments(code, stack)

    def set_cr2(self, address: int) -> None:
        self.cpu.write(CR2, address)

    def switch_task(self, gate: Gate, error_code: int | None, ip: int) -> None:
        try:
            switch_through_gate(self.cpu, self.memory, gate.selector, error_code, ip)
        except RingNotModeled as departure:
            self.request_stop(Stop(StopKind.NOT_MODELED, str(departure), ip))

    def triple_fault(self, why: str, ip: int, address: int | None) -> None:
        self.request_stop(Stop(StopKind.TRIPLE_FAULT, f"triple fault after {why}", ip,
                               fault_address=address))


class BareMetal:
    """Native mode's supervisor: the guest's IDT takes every vector, and a device
    interrupt waits for EFLAGS.IF."""

    all_ports_allowed = True  # ring 0 on a bare PC: no I/O privilege to check

    def __init__(self, machine: Machine):
        self.machine = machine
        self.cpu = machine.cpu
        rules = BareCpuRules(machine.cpu, machine.memory, machine.request_stop)
        self.delivery = Delivery(machine.cpu, rules, machine.exits)
        self.fast_entry = FastEntry(machine.cpu, self.delivery.deliver)
        self.nmi_blocked = False

    def on_interruption(self, event: Interruption) -> None:
        self.delivery.deliver(event)

    def interrupts_enabled(self) -> bool:
        return bool(self.cpu.read(self.cpu.width.flags) & EFLAGS_IF)

    def take_interrupt(self, irqs: IrqRouter) -> None:
        """Between instructions: an NMI unless one is being handled; else, if an
        interrupt is pending and IF is set, run the INTA cycle and deliver the vector
        it names."""
        if irqs.nmi and not self.nmi_blocked:
            irqs.take_nmi()
            self.nmi_blocked = True
            self.machine.watches.after_next_iret(self._unblock_nmi)
            self.delivery.deliver(external(Vector.NMI, self.cpu.ip))
        elif irqs.pending() and self.interrupts_enabled():
            self.delivery.deliver(external(irqs.acknowledge(),
                                           self.cpu.ip))

    def _unblock_nmi(self) -> None:
        self.nmi_blocked = False

    def insns_to_next_event(self) -> int | None:
        return None  # the PC's timers are the machine's own

    def port_allowed(self, port: int, size: int) -> bool:
        return True

    def on_fast_call(self, call: FastCall) -> None:
        self.fast_entry.run(call)


def boot_bare_pc(machine: Machine, image: KernelImage, *, cmdline: bytes,
                 modules: tuple[Path, ...]) -> None:
    """Start IMAGE on MACHINE as `qemu-system-i386 -kernel` starts it (or
    qemu-system-x86_64's, on a 64-bit MACHINE): SeaBIOS's screen, the Multiboot
    loader's memory and CPU state, QEMU's CPUID and open bus, and the guest's own IDT
    taking every interruption."""
    machine.show_firmware_screen()
    load_multiboot(machine, image, cmdline=cmdline, modules=modules)
    machine.present_cpuid(machine.cpu_model.cpuid)
    machine.mmio.open_bus()
    machine.attach(BareMetal(machine))
