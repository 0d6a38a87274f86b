"""Trap-and-emulate (full virtualization): an UNPATCHED Multiboot kernel runs in
ring 1 under the hypervisor, and each privileged instruction it executes faults and
is emulated against a virtual CPU (hv/trapemulate.py).

It is built from the PV hypervisor's parts, not a copy of them:
- memory: the Domain's checked guest access, and hv/pagetables.py exactly as in PV
  mode. Until the kernel turns paging on, it runs on an identity map of its RAM kept
  in the hypervisor's frames (as the PV entry's pv_identity_map, but out of the
  guest's reach); its own tables become the base, validated, when it sets CR0.PG or
  loads CR3 with paging on; its later stores into them fault and go through ptwr.
  The identity map lets every ring in, as paging-off does.
- segments: Xen's GDT (hv/gdt.py, layout.py), into which lgdt copies the kernel's
  descriptors after set_gdt's checks.
- interrupts: the CPU's own delivery (machine/delivery.py), under the rules of
  KernelIdt below: every exception and device interrupt goes through the kernel's own
  IDT gates (lidt is only recorded), honouring the virtual IF, with the hardware's
  frame and its nested faults (#DF, a triple fault ending the domain). CS and EFLAGS
  are shown as the kernel would see them natively: a ring-1 CS as RPL 0 (so the
  kernel's iret back into itself faults and is emulated, which restores the virtual
  IF), EFLAGS.IF as the virtual IF, IOPL 0. A trap from ring 3 switches to SS0:ESP0 of
  the TSS the kernel loaded with ltr.
- devices: port I/O goes straight to the PC's devices (Unicorn never traps it), and
  PIT/PIC interrupts wait for the virtual IF.

At CPL 3 the virtual IF reads as set: ring 3 can change neither IF, and the kernel's
iret into ring 3 runs on the CPU, which ignores the IF it pops at CPL 1.

The holes stay open (DESIGN.md): the sensitive instructions that do not fault
(catalogue classes with faults_when_deprivileged False) run on the CPU and show the
hypervisor's state. Each one the image contains gets a code hook on its own address,
so nothing else pays for it, and the run summary lists those that ran.
"""

import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from pvtool.abi.xen import GUEST_KERNEL_RPL
from pvtool.hv import layout
from pvtool.hv.bounce import HypervisedKernel
from pvtool.hv.builder import enter_ring1
from pvtool.hv.domain import Domain
from pvtool.hv.errors import DomainCrash
from pvtool.hv.trapemulate import TrapEmulator
from pvtool.hv.traps import take_page_fault
from pvtool.machine.cpu import EFLAGS, EIP, ESP
from pvtool.machine.delivery import (
    Delivery,
    DeliveryFault,
    Frame,
    Gate,
    read_idt_gate,
    read_tss_stack,
    write_guest,
)
from pvtool.machine.exits import Exit
from pvtool.machine.fast_call import FastCall
from pvtool.machine.interruption import Interruption, external
from pvtool.machine.irq import IrqRouter
from pvtool.machine.loader import KernelImage, load_multiboot
from pvtool.machine.pc import Machine
from pvtool.x86 import paging
from pvtool.x86.catalogue import CATALOGUE, classify
from pvtool.x86.isa import decode_all
from pvtool.x86.paging import PAGE_SIZE
from pvtool.x86.registers import (
    EFLAGS_IF,
    EFLAGS_IOPL,
)
from pvtool.x86.vectors import Vector

ENTRIES = 1024
# The identity map of the kernel's RAM while its paging is off: an L2 and its L1s in
# hypervisor frames after the hypervisor's own range.
IDENTITY_L2 = layout.BASE + layout.MEMORY_SIZE
IDENTITY_FLAGS = paging.P | paging.RW | paging.US | paging.A | paging.D  # paging off: any ring


def unvirtualizable(bits: int) -> frozenset[str]:
    """The catalogue classes that run untrapped when deprivileged, in BITS mode."""
    return frozenset(c.name for c in CATALOGUE
                     if not c.faults_when_deprivileged and bits in c.modes)


@dataclass(frozen=True)
class SensitiveUse:
    """A sensitive instruction that ran on the CPU, untrapped."""

    address: int
    name: str  # its catalogue class
    text: str
    count: int

    def to_dict(self) -> dict:
        return {"address": self.address, "class": self.name, "insn": self.text,
                "count": self.count}


class TrapMode:
    """The running trap-and-emulate guest: its domain, emulator and interrupt path."""

    def __init__(self, machine: Machine, image: KernelImage,
                 trace: Callable[[str], None] | None):
        self.machine = machine
        self.domain = Domain(machine, base_mfn=IDENTITY_L2 // PAGE_SIZE, superpages=True,
                             console_output=machine.output, trace=trace)
        self.emulator = TrapEmulator(self.domain)
        self.supervisor = TrapModeSupervisor(self)
        self.watch = SensitiveWatch(machine, image, self.emulator)

    def sensitive_report(self) -> list[SensitiveUse]:
        return self.watch.report()


def boot_trap_domain(machine: Machine, image: KernelImage, *, cmdline: bytes = b"",
                     modules=(), trace: Callable[[str], None] | None = None) -> TrapMode:
    """Load IMAGE as a Multiboot loader would, then start it in ring 1 under the
    hypervisor, with the registers Multiboot promises (EAX magic, EBX info)."""
    machine.show_firmware_screen()  # the kernel's memory is the PC's, screen and all
    load_multiboot(machine, image, cmdline=cmdline, modules=modules)
    nr_l1 = -(-machine.ram_size // (ENTRIES * PAGE_SIZE))
    machine.map_memory(layout.BASE, layout.MEMORY_SIZE + (1 + nr_l1) * PAGE_SIZE)
    _write_hypervisor_area(machine)
    _write_identity_map(machine, nr_l1)
    trap = TrapMode(machine, image, trace)
    trap.domain.upcall_mask = 1  # Multiboot enters with IF clear
    machine.attach(trap.supervisor)
    _enter_ring1(machine)
    return trap


def _write_hypervisor_area(machine: Machine) -> None:
    """The parts of the hypervisor's range a trap-mode guest needs: the GDT and
    shared_info pages (shared_info read-only: the kernel does not know it exists)
    and the iretd trampoline."""
    mem = machine.memory
    mem.write_phys(layout.PRIVATE_L1, layout.private_l1(shared_info_writable=False))
    mem.write_phys(layout.TRAMPOLINE + layout.IRETD_OFFSET, layout.IRETD)


def _write_identity_map(machine: Machine, nr_l1: int) -> None:
    l2 = [0] * ENTRIES
    for i in range(nr_l1):
        l1_addr = IDENTITY_L2 + (1 + i) * PAGE_SIZE
        l2[i] = l1_addr | IDENTITY_FLAGS
        first = i * ENTRIES
        frames = range(first, min(first + ENTRIES, machine.ram_size // PAGE_SIZE))
        l1 = [frame * PAGE_SIZE | IDENTITY_FLAGS for frame in frames]
        machine.memory.write_phys(l1_addr, struct.pack(f"<{ENTRIES}I",
                                                       *(l1 + [0] * (ENTRIES - len(l1)))))
    for slot, pde in layout.hypervisor_slots().entries.items():
        l2[slot] = pde
    machine.memory.write_phys(IDENTITY_L2, struct.pack(f"<{ENTRIES}I", *l2))


def _enter_ring1(machine: Machine) -> None:
    """The kernel's Multiboot entry, in ring 1 on the identity map, with the stack
    and flags the loader left as QEMU's does (a kernel may push before it sets its own
    stack)."""
    cpu = machine.cpu
    enter_ring1(machine, entry=cpu.read(EIP), cr3=IDENTITY_L2, cr4=0, esp=cpu.read(ESP),
                eflags=cpu.read(EFLAGS))


class KernelIdt(HypervisedKernel):
    """The DeliveryRules of trap-and-emulate: the kernel's own IDT (its virtual IDTR),
    GDT and TSS, exactly as the CPU uses them, with the kernel's ring 0 played by ring
    1: a gate's ring-0 selector is loaded with RPL 1, and the frame shows the kernel's
    CS with RPL 0 and the virtual IF, as the kernel would see them natively."""

    def __init__(self, domain: Domain, emulator: TrapEmulator):
        super().__init__(domain)
        self.cpu = emulator.cpu
        self.memory = domain.memory

    def gate(self, vector: int, software: bool, ip: int) -> Gate:
        return read_idt_gate(self.memory.read_virt, self.cpu.idt_base, self.cpu.idt_limit,
                             vector)

    def ring(self, cpl: int) -> int:
        return 0 if cpl == GUEST_KERNEL_RPL else cpl

    def handler_cs(self, gate: Gate, cpl: int) -> int:
        cs = gate.selector & ~3 | GUEST_KERNEL_RPL
        if not self.domain.gdt.is_code_selector(cs, GUEST_KERNEL_RPL):
            raise DeliveryFault(Vector.GP, gate.selector & ~3,
                                f"the gate names cs {gate.selector:#x}, not a kernel code "
                                "segment")
        return cs

    def kernel_stack(self, ring: int) -> tuple[int, int]:
        """SS0:ESP0 of the TSS the kernel loaded, read afresh (kernels update ESP0 on
        every context switch); SS0's ring-0 selector is used with RPL 1."""
        if not self.cpu.tr:
            raise DomainCrash("a trap from ring 3 before the kernel loaded a TSS (ltr)")
        ss0, esp0 = read_tss_stack(self.memory.read_virt, self.cpu.tss_base)
        ss = ss0 | GUEST_KERNEL_RPL if ss0 & 3 == 0 else ss0
        if not self.domain.gdt.is_stack_selector(ss, GUEST_KERNEL_RPL):
            raise DomainCrash(f"the TSS's SS0 {ss0:#x} is not a kernel stack segment")
        return ss, esp0

    def shown(self, frame: Frame) -> Frame:
        from_user = frame.cs & 3 == 3
        virtual_if = from_user or not self.domain.upcall_mask
        flags = frame.flags & ~(EFLAGS_IF | EFLAGS_IOPL) | (EFLAGS_IF if virtual_if else 0)
        return replace(frame, cs=frame.cs if from_user else frame.cs & ~3, flags=flags)

    def write_stack(self, address: int, data: bytes) -> None:
        write_guest(self.memory.write_virt, address, data)

    def on_entry(self, flags: int, gate: Gate) -> int:
        """The virtual IF survives a trap gate and is cleared by an interrupt gate;
        the real IF follows it (trapemulate.py explains why it may)."""
        virtual_if = not gate.clears_if and (
            self.vcpu.cs & 3 == 3 or not self.domain.upcall_mask)
        self.domain.upcall_mask = 0 if virtual_if else 1
        return flags & ~EFLAGS_IF | (EFLAGS_IF if virtual_if else 0)


class TrapModeSupervisor:
    """Every interrupt and exception of a trap-mode guest."""

    def __init__(self, trap: TrapMode):
        self.domain = trap.domain
        self.vcpu = trap.domain.vcpu
        self.emulator = trap.emulator
        self.exits = trap.machine.exits
        self.delivery = Delivery(trap.machine.cpu, KernelIdt(trap.domain, trap.emulator),
                                 self.exits)

    def on_interruption(self, event: Interruption) -> None:
        try:
            self._route(event)
        except DomainCrash as crash:
            self.domain.crash(crash.reason, crash.address)

    def interrupts_enabled(self) -> bool:
        return self.vcpu.cpl == 3 or not self.domain.upcall_mask

    def take_interrupt(self, irqs: IrqRouter) -> None:
        if irqs.pending() and self.interrupts_enabled():
            try:
                self.delivery.deliver(external(irqs.acknowledge(), self.vcpu.eip))
            except DomainCrash as crash:
                self.domain.crash(crash.reason, crash.address)

    def insns_to_next_event(self) -> int | None:
        return None  # the PC's timers are the machine's own

    def on_fast_call(self, call: FastCall) -> None:
        """`syscall` and `sysenter` do nothing here, as they did before the machine
        reported them: the 32-bit PV ABI's system calls are `int 0x80` and its
        hypercalls `int 0x82` (XEN-ABI.md); the 64-bit ABI's routing is hv64entry's."""

    def port_allowed(self, port: int, size: int) -> bool:
        return True  # port I/O goes straight to the PC's devices

    def _route(self, event: Interruption) -> None:
        if event.software:
            self.delivery.deliver(event)
            return
        kernel = self.vcpu.cpl == GUEST_KERNEL_RPL
        if event.vector == Vector.GP and kernel and self.emulator.emulate_privileged(event.ip):
            self.exits[Exit.EMULATED] += 1
            self._after_emulation()
            return
        if event.vector == Vector.PF and take_page_fault(self.domain, event, kernel):
            return
        self.delivery.deliver(event)

    def _after_emulation(self) -> None:
        """An emulated instruction that enabled interrupts (iret, a wrmsr...) lets a
        waiting one in at once, as the CPU would; sti only after the next instruction
        (its interrupt shadow), and a blocked hlt when the run loop wakes it."""
        machine = self.domain.machine
        if machine.stop is None and not machine.blocked \
                and self.emulator.last_mnemonic != "sti":
            self.take_interrupt(machine.irqs)


class SensitiveWatch:
    """Code hooks on the image's sensitive instructions that do not fault, counting
    each execution (by a linear sweep of its executable segments, as the hlt watch)."""

    def __init__(self, machine: Machine, image: KernelImage, emulator: TrapEmulator):
        self.emulator = emulator
        self.sites: dict[int, tuple[str, str]] = {}
        self.counts: Counter[int] = Counter()
        sensitive = unvirtualizable(image.bits)
        for base, code in image.executable_regions():
            for insn in decode_all(code, base, image.bits):
                cls = classify(insn) if hasattr(insn, "mnemonic") else None
                if cls is not None and cls.name in sensitive:
                    self.sites[insn.address] = (cls.name, f"{insn.mnemonic} {insn.op_str}".strip())
        machine.watches.code_always(self.sites, self._on_site)

    def _on_site(self, address: int) -> None:
        self.counts[address] += 1

    def report(self) -> list[SensitiveUse]:
        """The sites that ran on the CPU: executions the emulator did not take over
        (an iret into the kernel faults and is emulated)."""
        uses = []
        for address in sorted(self.counts):
            native = self.counts[address] - self.emulator.emulated_at.get(address, 0)
            if native > 0:
                name, text = self.sites[address]
                uses.append(SensitiveUse(address, name, text, native))
        return uses
