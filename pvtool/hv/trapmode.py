"""Trap-and-emulate (full virtualization): an UNPATCHED Multiboot kernel runs in
ring 1 under the hypervisor, and each privileged instruction it executes faults and
is emulated against a virtual CPU (hv/trapemulate.py).

It is built from the PV hypervisor's parts, not a copy of them:
- memory: the Domain's checked guest access, and hv/pagetables.py exactly as in PV
  mode. Until the kernel turns paging on, it runs on an identity map of its RAM kept
  in the hypervisor's frames (as the PV entry's pv_identity_map, but out of the
  guest's reach); its own tables become the base, validated, when it sets CR0.PG or
  loads CR3 with paging on; its later stores into them fault and go through ptwr.
- segments: Xen's GDT (hv/gdt.py, layout.py), into which lgdt copies the kernel's
  descriptors after set_gdt's checks.
- interrupts: pvtool delivers every exception and device interrupt as a VIRTUAL
  interrupt through the kernel's own IDT gates (lidt is only recorded), honouring the
  virtual IF, with the hardware's frame: [error code,] EIP, CS, EFLAGS [, ESP, SS].
  CS and EFLAGS are shown as the kernel would see them natively: a ring-1 CS as RPL 0
  (so the kernel's iret back into itself faults and is emulated, which restores the
  virtual IF), EFLAGS.IF as the virtual IF, IOPL 0. A trap from ring 3 switches to
  SS0:ESP0 of the TSS the kernel loaded with ltr.
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
from dataclasses import dataclass

from pvtool.abi.xen import GUEST_KERNEL_RPL
from pvtool.hv import layout
from pvtool.hv.builder import enter_ring1
from pvtool.hv.domain import Domain
from pvtool.hv.errors import DomainCrash, HypercallError
from pvtool.hv.frames import machine_frames
from pvtool.hv.gdt import Gdt
from pvtool.hv.pagetables import PageTables
from pvtool.hv.ptwr import handle_write_fault
from pvtool.hv.trapemulate import TrapEmulator
from pvtool.image.elf import ElfImage
from pvtool.machine.cpu import CR2, CS, EFLAGS, EIP, ESP, SS
from pvtool.machine.exits import Exit
from pvtool.machine.interrupts import is_software_interrupt
from pvtool.machine.loader import load_multiboot
from pvtool.machine.pc import Machine
from pvtool.x86 import paging
from pvtool.x86.catalogue import CATALOGUE, classify
from pvtool.x86.descriptors import GateDescriptor, SystemType
from pvtool.x86.isa import decode_all
from pvtool.x86.paging import PAGE_SIZE
from pvtool.x86.registers import (
    EFLAGS_IF,
    EFLAGS_IOPL,
    EFLAGS_NT,
    EFLAGS_RESERVED,
    EFLAGS_RF,
    EFLAGS_TF,
    TSS32_ESP0,
)
from pvtool.x86.vectors import ERROR_CODE, Vector, idt_error_code

ENTRIES = 1024
# The identity map of the kernel's RAM while its paging is off: an L2 and its L1s in
# hypervisor frames after the hypervisor's own range.
IDENTITY_L2 = layout.BASE + layout.MEMORY_SIZE
IDENTITY_FLAGS = paging.P | paging.RW | paging.A | paging.D
UNVIRTUALIZABLE = frozenset(c.name for c in CATALOGUE
                            if not c.faults_when_deprivileged and 32 in c.modes)


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

    def __init__(self, machine: Machine, image: ElfImage,
                 trace: Callable[[str], None] | None):
        self.machine = machine
        nr_pages = machine.ram_size // PAGE_SIZE
        self.domain = Domain(machine=machine, nr_pages=nr_pages,
                             frames=machine_frames(nr_pages),
                             console_output=machine.output, trace=trace)
        self.domain.gdt = Gdt(self.domain)
        self.domain.pagetables = PageTables(self.domain, IDENTITY_L2 // PAGE_SIZE)
        self.emulator = TrapEmulator(self.domain)
        self.handler = TrapHandler(self)
        self.watch = SensitiveWatch(machine, image, self.emulator)

    def sensitive_report(self) -> list[SensitiveUse]:
        return self.watch.report()


def boot_trap_domain(machine: Machine, image: ElfImage, *, cmdline: bytes = b"",
                     modules=(), trace: Callable[[str], None] | None = None) -> TrapMode:
    """Load IMAGE as a Multiboot loader would, then start it in ring 1 under the
    hypervisor, with the registers Multiboot promises (EAX magic, EBX info)."""
    load_multiboot(machine, image, cmdline=cmdline, modules=modules)
    nr_l1 = -(-machine.ram_size // (ENTRIES * PAGE_SIZE))
    machine.map_memory(layout.BASE, layout.MEMORY_SIZE + (1 + nr_l1) * PAGE_SIZE)
    _write_hypervisor_area(machine)
    _write_identity_map(machine, nr_l1)
    trap = TrapMode(machine, image, trace)
    trap.domain.gdt.install_reserved()
    trap.domain.upcall_mask = 1  # Multiboot enters with IF clear
    machine.trap_handler = trap.handler
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
    """The kernel's Multiboot entry, in ring 1 on the identity map. Multiboot leaves
    ESP undefined, as the native loader does: the kernel sets its own stack."""
    enter_ring1(machine, entry=machine.cpu.read(EIP), cr3=IDENTITY_L2, cr4=0, esp=0,
                eflags=EFLAGS_RESERVED)


class TrapHandler:
    """Every interrupt and exception of a trap-mode guest."""

    def __init__(self, trap: TrapMode):
        self.trap = trap
        self.domain = trap.domain
        self.vcpu = trap.domain.vcpu
        self.emulator = trap.emulator
        self.exits = trap.machine.exits

    def on_interrupt(self, vector: int) -> None:
        try:
            self._route(vector)
        except DomainCrash as crash:
            self.domain.crash(crash.reason)

    def interrupts_enabled(self) -> bool:
        return self.vcpu.cpl == 3 or not self.domain.upcall_mask

    def take_interrupt(self, pic) -> None:
        if pic.pending() and self.interrupts_enabled():
            self.exits[Exit.IRQ] += 1
            self.deliver(pic.acknowledge(), None, software=False, return_eip=self.vcpu.eip)

    def _route(self, vector: int) -> None:
        eip = self.vcpu.eip
        if is_software_interrupt(self.domain.memory, vector, eip):
            self.exits[Exit.INTERRUPT] += 1
            self.deliver(vector, None, software=True, return_eip=eip)
            return
        error_code = self.domain.machine.cpu.fault_error_code() \
            if vector in ERROR_CODE else None
        self.vcpu.ack_exception()
        cpl = self.vcpu.cpl
        kernel = cpl == GUEST_KERNEL_RPL
        if vector == Vector.GP and kernel and self.emulator.emulate_privileged(eip):
            self.exits[Exit.EMULATED] += 1
            self._after_emulation()
            return
        self.exits[Exit.EXCEPTION] += 1
        if vector == Vector.PF:
            address = self.domain.machine.cpu.read(CR2)
            if kernel and handle_write_fault(self.domain, address, error_code):
                return
            self.domain.set_cr2(address)
        self.deliver(vector, error_code, software=False, return_eip=eip)

    def _after_emulation(self) -> None:
        """An emulated instruction that enabled interrupts (iret, a wrmsr...) lets a
        waiting one in at once, as the CPU would; sti only after the next instruction
        (its interrupt shadow), and a blocked hlt when the run loop wakes it."""
        machine = self.domain.machine
        if machine.stop is None and not machine.blocked \
                and self.emulator.last_mnemonic != "sti":
            self.take_interrupt(machine.pic)

    def deliver(self, vector: int, error_code: int | None, *, software: bool,
                return_eip: int, nested: bool = False) -> None:
        """Deliver VECTOR through the kernel's IDT as the CPU would from ring 0 and
        ring 3 (SDM 6.12), with the kernel's ring 0 played by ring 1. A delivery the
        CPU would refuse raises #GP or #NP instead; one that faults on the kernel's
        own stack or IDT ends the domain, as a triple fault ends a PC."""
        cpu_ring = self.vcpu.cpl
        gate = self._gate(vector)
        refused = None
        if software and gate.dpl < (0 if cpu_ring == GUEST_KERNEL_RPL else cpu_ring):
            # `int n` is two bytes, int3 one: the #GP reports the instruction itself.
            refused, return_eip = Vector.GP, return_eip - (1 if vector == Vector.BP else 2)
        elif not gate.present:
            refused = Vector.NP
        if refused is not None:
            if nested:
                raise DomainCrash(f"triple fault: vector {vector} cannot be delivered "
                                  "(its IDT gate is refused)")
            self.deliver(refused, idt_error_code(vector), software=False, return_eip=return_eip,
                         nested=True)
            return
        handler_cs = gate.selector & ~3 | GUEST_KERNEL_RPL
        if not self.domain.gdt.is_code_selector(handler_cs, GUEST_KERNEL_RPL):
            raise DomainCrash(f"the IDT gate of vector {vector} names cs {gate.selector:#x}, "
                              "not a kernel code segment")
        self._push_and_enter(gate, handler_cs, error_code, return_eip)

    def _gate(self, vector: int) -> GateDescriptor:
        cpu = self.emulator.cpu
        if vector * 8 + 7 > cpu.idt_limit:
            raise DomainCrash(f"vector {vector} is past the IDT's limit")
        try:
            raw = self.domain.copy_from_guest(cpu.idt_base + vector * 8, 8)
        except HypercallError:
            raise DomainCrash(f"the IDT gate of vector {vector} is not mapped") from None
        gate = GateDescriptor.decode(raw)
        if raw[5] & 0x10 or gate.type not in (SystemType.INTERRUPT_GATE,
                                              SystemType.TRAP_GATE):
            raise DomainCrash(f"the IDT entry of vector {vector} is not an interrupt or "
                              "trap gate")
        return gate

    def _push_and_enter(self, gate: GateDescriptor, handler_cs: int,
                        error_code: int | None, return_eip: int) -> None:
        vcpu, dom = self.vcpu, self.domain
        from_user = vcpu.cpl == 3
        eflags = vcpu.eflags
        virtual_if = from_user or not dom.upcall_mask
        shown_eflags = eflags & ~(EFLAGS_IF | EFLAGS_IOPL) | (EFLAGS_IF if virtual_if else 0)
        shown_cs = vcpu.cs if from_user else vcpu.cs & ~3
        frame = [return_eip, shown_cs, shown_eflags]
        if from_user:
            ss, sp = self._kernel_stack()
            frame += [vcpu.esp, vcpu.get(SS)]
        else:
            ss, sp = vcpu.get(SS), vcpu.esp
        if error_code is not None:
            frame.insert(0, error_code)
        esp = (sp - 4 * len(frame)) & 0xFFFFFFFF
        try:
            dom.copy_to_guest(esp, struct.pack(f"<{len(frame)}I", *frame))
        except HypercallError:
            raise DomainCrash(f"the kernel stack at {esp:#010x} is not writable") from None
        if gate.type == SystemType.INTERRUPT_GATE:
            virtual_if = False
        dom.upcall_mask = 0 if virtual_if else 1
        new_eflags = eflags & ~(EFLAGS_TF | EFLAGS_NT | EFLAGS_RF | EFLAGS_IF) \
            | (EFLAGS_IF if virtual_if else 0)
        if from_user:
            vcpu.enter_ring(GUEST_KERNEL_RPL, cs=handler_cs, eip=gate.offset, ss=ss, esp=esp,
                            eflags=new_eflags)
            return
        vcpu.set(ESP, esp)
        vcpu.set(EFLAGS, new_eflags)
        if handler_cs != vcpu.cs:
            vcpu.set(CS, handler_cs)
        vcpu.set(EIP, gate.offset)

    def _kernel_stack(self) -> tuple[int, int]:
        """SS0:ESP0 of the TSS the kernel loaded, read afresh (kernels update ESP0 on
        every context switch); SS0's ring-0 selector is used with RPL 1."""
        tss = self.emulator.cpu.tss_base
        if not self.emulator.cpu.tr:
            raise DomainCrash("a trap from ring 3 before the kernel loaded a TSS (ltr)")
        try:
            esp0, ss0 = struct.unpack("<IH", self.domain.copy_from_guest(tss + TSS32_ESP0, 6))
        except HypercallError:
            raise DomainCrash(f"the TSS at {tss:#x} is not mapped") from None
        ss = ss0 | GUEST_KERNEL_RPL if ss0 & 3 == 0 else ss0
        if not self.domain.gdt.is_stack_selector(ss, GUEST_KERNEL_RPL):
            raise DomainCrash(f"the TSS's SS0 {ss0:#x} is not a kernel stack segment")
        return ss, esp0


class SensitiveWatch:
    """Code hooks on the image's sensitive instructions that do not fault, counting
    each execution (by a linear sweep of its executable segments, as the hlt watch)."""

    def __init__(self, machine: Machine, image: ElfImage, emulator: TrapEmulator):
        self.emulator = emulator
        self.sites: dict[int, tuple[str, str]] = {}
        self.counts: Counter[int] = Counter()
        for base, code in image.executable_regions():
            for insn in decode_all(code, base, 32):
                cls = classify(insn) if hasattr(insn, "mnemonic") else None
                if cls is not None and cls.name in UNVIRTUALIZABLE:
                    self.sites[insn.address] = (cls.name, f"{insn.mnemonic} {insn.op_str}".strip())
        machine.watch(self.sites, self._on_site)

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
