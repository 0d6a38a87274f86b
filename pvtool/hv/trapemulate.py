"""The privileged instructions of an UNMODIFIED kernel, emulated against a virtual
CPU: the trap-and-emulate mode's half of the shared emulator (hv/emulate.py).

A kernel written for a PC runs in ring 1 here, so each of its privileged
instructions raises #GP and is emulated by the handler of its catalogue class in
TRAP_HANDLERS: the PV emulator's table (the control registers, cli/sti/hlt, invlpg,
the MSRs, the debug registers, loads of SS with ring-0 selectors, sysexit, sysret)
extended with what only a kernel that believes it owns the machine does: lgdt (the
table goes through Xen's set_gdt checks into the real GDT), lidt and ltr (kept as
virtual registers: pvtool delivers every interrupt itself) and the iret that
returns to the ring-0 CS its frames carry; cli and sti are replaced, since here the
hardware IF follows the virtual one.

The virtual IF is the PV domain's upcall mask (mask = !IF), and the hardware IF
follows it: pvtool preempts the guest by instruction-count slices, never by a host
interrupt, so it does not need the real IF set while the guest runs (a VMM on real
hardware does, and its guests see IF = 1 everywhere). What stays broken is what the
CPU decides by itself at CPL 1: popf and a non-faulting iret leave IF alone,
sgdt/sidt/str/smsw show the hypervisor's registers, CS and SS show ring 1.
"""

import struct
from dataclasses import dataclass

from pvtool.abi.xen import FIRST_RESERVED_GDT_ENTRY, GUEST_KERNEL_RPL
from pvtool.hv import layout
from pvtool.hv.domain import Domain
from pvtool.hv.emulate import PV_HANDLERS, ControlRegisters, Emulator, Handler, check_handlers
from pvtool.hv.errors import DomainCrash, NotEmulated
from pvtool.hv.gdt import check_descriptor
from pvtool.image.multiboot import CR0_AT_ENTRY
from pvtool.machine.cpu import CS, EFLAGS, ESP
from pvtool.x86.descriptors import (
    PRESENT_BIT,
    S_BIT,
    TYPE_SHIFT,
    SegmentDescriptor,
    SystemType,
    gdt_offset,
)
from pvtool.x86.registers import EFLAGS_IF, EFLAGS_IOPL, EFLAGS_RESERVED

TSS_AVAILABLE, TSS_BUSY = SystemType.TSS_AVAILABLE, SystemType.TSS_BUSY


@dataclass
class VirtualCpu:
    """The system registers the kernel believes it loaded."""

    gdt_base: int = 0
    gdt_limit: int = 0
    idt_base: int = 0
    idt_limit: int = 0xFFFF  # the reset value (SDM 9.1.1)
    tr: int = 0
    tss_base: int = 0


class TrapRegisters(ControlRegisters):
    """CR0, CR3 and CR4 as the kernel wrote them; at entry, Multiboot's CR0 (PE only)."""

    def __init__(self, domain: Domain):
        super().__init__(domain, None)
        self.private = {"cr0": CR0_AT_ENTRY, "cr3": 0, "cr4": 0}

    def get(self, name: str) -> int:
        return self.private[name]

    def set(self, name: str, value: int) -> None:
        self.private[name] = value & 0xFFFFFFFF


class TrapEmulator(Emulator):
    def __init__(self, domain: Domain):
        super().__init__(domain, {}, None)
        self.regs = TrapRegisters(domain)
        self.handlers = TRAP_HANDLERS
        self.fault_handlers = {}  # a kernel written for a PC: no Xen answers
        self.cpu = VirtualCpu()
        self.emulated_at: dict[int, int] = {}  # address -> times emulated
        self.last_mnemonic = ""

    def _emulate(self, insn, overrides=None) -> None:
        super()._emulate(insn, overrides)
        self.emulated_at[insn.address] = self.emulated_at.get(insn.address, 0) + 1
        self.last_mnemonic = insn.mnemonic

    def set_virtual_if(self, enabled: bool) -> None:
        self.domain.upcall_mask = 0 if enabled else 1
        vcpu = self.domain.vcpu
        vcpu.set(EFLAGS, vcpu.eflags & ~EFLAGS_IF | (EFLAGS_IF if enabled else 0))

    def gdt_entry_address(self, selector: int) -> int:
        offset = gdt_offset(selector, self.cpu.gdt_limit)
        if offset is None:
            raise DomainCrash(f"selector {selector:#x} is not in the kernel's GDT")
        return self.cpu.gdt_base + offset


# -- the virtual IF ---------------------------------------------------------------------
def clear_virtual_if(em: TrapEmulator, insn) -> None:
    em.set_virtual_if(False)


def set_virtual_if(em: TrapEmulator, insn) -> None:
    em.set_virtual_if(True)


# -- descriptor tables ------------------------------------------------------------------
def load_gdt(em: TrapEmulator, insn) -> None:
    """Load the kernel's descriptors into the real GDT after set_gdt's checks (DPL 0
    raised to 1, system descriptors refused), except TSS descriptors, which only ltr
    reads: the real GDT never holds them. The table is copied now, so a later store
    into it takes effect at the next lgdt."""
    limit, base = struct.unpack("<HI", em.read(em.address(insn), 6))
    raw = _guest_descriptors(em, base, limit)
    installed = [0 if _is_tss(desc) else check_descriptor(desc) for desc in raw]
    old_entries = min((em.cpu.gdt_limit + 1) // 8, FIRST_RESERVED_GDT_ENTRY)
    installed += [0] * max(0, old_entries - len(raw))
    if installed:
        em.domain.memory.write_phys(layout.GDT, struct.pack(f"<{len(installed)}Q",
                                                            *installed))
    em.cpu.gdt_base, em.cpu.gdt_limit = base, limit


def _guest_descriptors(em: TrapEmulator, base: int, limit: int) -> tuple[int, ...]:
    """The descriptors the real GDT can hold: those below FIRST_RESERVED_GDT_ENTRY,
    where Xen's own begin. A table of the CPU's full size loads if none past them is
    present; a present one there is a crash (the kernel would get Xen's instead)."""
    entries = (limit + 1) // 8
    raw = struct.unpack(f"<{entries}Q", em.read(base, 8 * entries)) if entries else ()
    for index in range(FIRST_RESERVED_GDT_ENTRY, entries):
        if raw[index] & PRESENT_BIT:
            raise DomainCrash(f"lgdt of {entries} descriptors: entry {index} is present, "
                              "where Xen keeps its own")
    return raw[:FIRST_RESERVED_GDT_ENTRY]


def load_idt(em: TrapEmulator, insn) -> None:
    limit, base = struct.unpack("<HI", em.read(em.address(insn), 6))
    em.cpu.idt_base, em.cpu.idt_limit = base, limit


def load_task_register(em: TrapEmulator, insn) -> None:
    """The TSS descriptor must be an available 32-bit TSS in the kernel's GDT; it
    becomes busy there, as the CPU marks it."""
    selector = em.source16(insn)
    address = em.gdt_entry_address(selector)
    desc = SegmentDescriptor.decode(em.read(address, 8))
    if desc.s or desc.type != TSS_AVAILABLE or not desc.present:
        raise DomainCrash(f"ltr {selector:#x}: not an available 32-bit TSS")
    busy = desc.to_int() | (TSS_BUSY ^ TSS_AVAILABLE) << TYPE_SHIFT
    em.write(address, struct.pack("<Q", busy))
    em.cpu.tr, em.cpu.tss_base = selector, desc.base


# -- returns ----------------------------------------------------------------------------
def return_to_kernel(em: TrapEmulator, insn) -> int:
    """An iret back into the kernel faults at CPL 1, since the frame's CS has RPL 0
    (the frames pvtool pushes show the kernel's CS as the kernel would see it
    natively, and so do frames the kernel builds). Emulate it: pop EIP, CS and
    EFLAGS, and restore the virtual IF from the popped IF. An iret to ring 3 does
    not fault and runs on the CPU."""
    vcpu = em.domain.vcpu
    esp = vcpu.esp
    eip, cs, eflags = struct.unpack("<3I", em.read(esp, 12))
    cs &= 0xFFFF
    if cs & 3 > GUEST_KERNEL_RPL:
        raise NotEmulated(f"iret to cs {cs:#x}: the frame itself is bad")
    ring1_cs = cs | GUEST_KERNEL_RPL
    if not em.domain.gdt.is_code_selector(ring1_cs, GUEST_KERNEL_RPL):
        raise DomainCrash(f"iret to cs {cs:#x}: not a kernel code segment")
    vcpu.set(ESP, esp + 12)
    enabled = bool(eflags & EFLAGS_IF)
    em.domain.upcall_mask = 0 if enabled else 1
    vcpu.set(EFLAGS, eflags & ~(EFLAGS_IF | EFLAGS_IOPL) | (EFLAGS_IF if enabled else 0)
             | EFLAGS_RESERVED)
    if ring1_cs != vcpu.cs:
        vcpu.set(CS, ring1_cs)
    return eip


def _is_tss(desc: int) -> bool:
    if not desc & PRESENT_BIT or desc & S_BIT:
        return False
    return (desc >> TYPE_SHIFT) & 0xF in (TSS_AVAILABLE, TSS_BUSY)


# The trap-and-emulate emulator: the PV table, with cli, sti and iret replaced (the
# kernel's own iret against its virtual IF, not a trap site's HYPERVISOR_iret) and what
# a kernel that owns the machine does added.
TRAP_HANDLERS: dict[str, Handler] = PV_HANDLERS | {
    "cli": clear_virtual_if, "sti": set_virtual_if,
    "lgdt": load_gdt, "lidt": load_idt, "ltr": load_task_register,
    "iret": return_to_kernel,
}
check_handlers(TRAP_HANDLERS, frozenset(PV_HANDLERS), exactly=False)
