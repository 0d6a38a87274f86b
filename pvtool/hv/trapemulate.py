"""The privileged instructions of an UNMODIFIED kernel, emulated against a virtual
CPU: the trap-and-emulate mode's half of the shared emulator (hv/emulate.py).

A kernel written for a PC runs in ring 1 here, so each of its privileged
instructions raises #GP and lands in Emulator._emulate, which finds the `_op_` method
named for the instruction's catalogue class. The PV emulator already knows the
control registers, cli/sti/hlt, invlpg, the MSRs and the debug registers; this
subclass adds what only a kernel that believes it owns the machine does: lgdt (the
table goes through Xen's set_gdt checks into the real GDT), lidt and ltr (kept as
virtual registers: pvtool delivers every interrupt itself), loads of SS with its
ring-0 selectors, and the iret that returns to the ring-0 CS its frames carry.

The virtual IF is the PV domain's upcall mask (mask = !IF), and the hardware IF
follows it: pvtool preempts the guest by instruction-count slices, never by a host
interrupt, so it does not need the real IF set while the guest runs (a VMM on real
hardware does, and its guests see IF = 1 everywhere). What stays broken is what the
CPU decides by itself at CPL 1: popf and a non-faulting iret leave IF alone,
sgdt/sidt/str/smsw show the hypervisor's registers, CS and SS show ring 1.
"""

import struct
from dataclasses import dataclass

from capstone.x86_const import X86_OP_MEM, X86_OP_REG

from pvtool.abi.xen import FIRST_RESERVED_GDT_ENTRY, GUEST_KERNEL_RPL
from pvtool.hv import layout
from pvtool.hv.domain import Domain
from pvtool.hv.emulate import ControlRegisters, Emulator
from pvtool.hv.errors import DomainCrash, HypercallError
from pvtool.hv.gdt import check_descriptor
from pvtool.image.multiboot import CR0_AT_ENTRY
from pvtool.machine.cpu import CS, EFLAGS, ESP, GPRS_BY_NAME, SS
from pvtool.x86.catalogue import memory_operand
from pvtool.x86.descriptors import SegmentDescriptor, SystemType
from pvtool.x86.registers import EFLAGS_IF, EFLAGS_IOPL

TSS_AVAILABLE, TSS_BUSY = SystemType.TSS_AVAILABLE, SystemType.TSS_BUSY
# A register operand as capstone names it -> (the 32-bit register, its width mask).
_SUBREGISTERS = {name: (name, 0xFFFFFFFF) for name in GPRS_BY_NAME} | {
    name[1:]: (name, 0xFFFF) for name in GPRS_BY_NAME}


class NotEmulated(Exception):
    """The instruction faulted for a reason of the guest's own: its #GP is delivered."""


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
        self.cpu = VirtualCpu()
        self.emulated_at: dict[int, int] = {}  # address -> times emulated
        self.last_mnemonic = ""

    def _emulate(self, insn) -> bool:
        try:
            done = super()._emulate(insn)
        except NotEmulated:
            return False
        if done:
            self.emulated_at[insn.address] = self.emulated_at.get(insn.address, 0) + 1
            self.last_mnemonic = insn.mnemonic
        return done

    # -- the virtual IF -------------------------------------------------------------------
    def set_virtual_if(self, enabled: bool) -> None:
        self.domain.upcall_mask = 0 if enabled else 1
        vcpu = self.domain.vcpu
        vcpu.set(EFLAGS, vcpu.eflags & ~EFLAGS_IF | (EFLAGS_IF if enabled else 0))

    def _op_cli(self, insn) -> None:
        self.set_virtual_if(False)

    def _op_sti(self, insn) -> None:
        self.set_virtual_if(True)

    # -- descriptor tables ----------------------------------------------------------------
    def _op_lgdt(self, insn) -> None:
        """Load the kernel's descriptors into the real GDT after set_gdt's checks
        (DPL 0 raised to 1, system descriptors refused), except TSS descriptors, which
        only ltr reads: the real GDT never holds them. The table is copied now, so a
        later store into it takes effect at the next lgdt."""
        limit, base = struct.unpack("<HI", self._read(self._address(insn), 6))
        entries = (limit + 1) // 8
        if entries > FIRST_RESERVED_GDT_ENTRY:
            raise DomainCrash(f"lgdt of {entries} entries reaches the hypervisor's own")
        raw = struct.unpack(f"<{entries}Q", self._read(base, 8 * entries)) if entries else ()
        installed = [0 if _is_tss(desc) else check_descriptor(desc) for desc in raw]
        old_entries = (self.cpu.gdt_limit + 1) // 8
        installed += [0] * max(0, old_entries - entries)
        if installed:
            self.domain.memory.write_phys(layout.GDT, struct.pack(f"<{len(installed)}Q",
                                                                  *installed))
        self.cpu.gdt_base, self.cpu.gdt_limit = base, limit

    def _op_lidt(self, insn) -> None:
        limit, base = struct.unpack("<HI", self._read(self._address(insn), 6))
        self.cpu.idt_base, self.cpu.idt_limit = base, limit

    def _op_ltr(self, insn) -> None:
        """The TSS descriptor must be an available 32-bit TSS in the kernel's GDT; it
        becomes busy there, as the CPU marks it."""
        selector = self._source(insn) & 0xFFFF
        address = self.gdt_entry_address(selector)
        desc = SegmentDescriptor.decode(self._read(address, 8))
        if desc.s or desc.type != TSS_AVAILABLE or not desc.present:
            raise DomainCrash(f"ltr {selector:#x}: not an available 32-bit TSS")
        busy = desc.to_int() | (TSS_BUSY ^ TSS_AVAILABLE) << 40
        self._write(address, struct.pack("<Q", busy))
        self.cpu.tr, self.cpu.tss_base = selector, desc.base

    def gdt_entry_address(self, selector: int) -> int:
        index = selector & ~7
        if selector & 4 or index == 0 or index + 7 > self.cpu.gdt_limit:
            raise DomainCrash(f"selector {selector:#x} is not in the kernel's GDT")
        return self.cpu.gdt_base + index

    # -- segments and returns ---------------------------------------------------------------
    def _op_mov_to_ss(self, insn) -> None:
        self._load_ss(self._source(insn) & 0xFFFF)

    def _op_pop_ss(self, insn) -> None:
        vcpu = self.domain.vcpu
        esp = vcpu.esp
        (selector,) = struct.unpack("<I", self._read(esp, 4))
        self._load_ss(selector & 0xFFFF)
        vcpu.set(ESP, esp + 4)

    def _load_ss(self, selector: int) -> None:
        """The kernel's ring-0 stack selector names a descriptor set_gdt raised to
        ring 1: load it with RPL 1, as Xen's fixup_guest_stack_selector does."""
        ring1 = selector | GUEST_KERNEL_RPL if selector & 3 == 0 else selector
        if not self.domain.gdt.is_stack_selector(ring1, GUEST_KERNEL_RPL):
            raise DomainCrash(f"mov ss, {selector:#x}: not a kernel stack segment")
        self.domain.vcpu.set(SS, ring1)

    def _op_iret(self, insn) -> int | None:
        """An iret back into the kernel faults at CPL 1, since the frame's CS has RPL 0
        (the frames pvtool pushes show the kernel's CS as the kernel would see it
        natively, and so do frames the kernel builds). Emulate it: pop EIP, CS and
        EFLAGS, and restore the virtual IF from the popped IF. An iret to ring 3 does
        not fault and runs on the CPU."""
        vcpu = self.domain.vcpu
        esp = vcpu.esp
        eip, cs, eflags = struct.unpack("<3I", self._read(esp, 12))
        cs &= 0xFFFF
        if cs & 3 > GUEST_KERNEL_RPL:
            raise NotEmulated  # to ring 3: the frame itself is bad
        ring1_cs = cs | GUEST_KERNEL_RPL
        if not self.domain.gdt.is_code_selector(ring1_cs, GUEST_KERNEL_RPL):
            raise DomainCrash(f"iret to cs {cs:#x}: not a kernel code segment")
        vcpu.set(ESP, esp + 12)
        enabled = bool(eflags & EFLAGS_IF)
        self.domain.upcall_mask = 0 if enabled else 1
        vcpu.set(EFLAGS, eflags & ~(EFLAGS_IF | EFLAGS_IOPL) | (EFLAGS_IF if enabled else 0)
                 | 0x2)
        if ring1_cs != vcpu.cs:
            vcpu.set(CS, ring1_cs)
        return eip

    # -- operands ---------------------------------------------------------------------------
    def _address(self, insn) -> int:
        """The linear address of the memory operand (segments are flat)."""
        mem = memory_operand(insn)
        address = mem.disp
        if mem.base:
            address += self._register(mem.base)
        if mem.index:
            address += self._register(mem.index) * mem.scale
        return address & 0xFFFFFFFF

    def _source(self, insn) -> int:
        """The value of a one-operand instruction's register or memory source."""
        op = insn.operands[-1]
        if op.type == X86_OP_REG:
            return self._register(insn.reg_name(op.reg))
        if op.type == X86_OP_MEM:
            return struct.unpack("<H", self._read(self._address(insn), 2))[0]
        raise DomainCrash(f"cannot emulate {insn.mnemonic} {insn.op_str}")

    def _register(self, name: str) -> int:
        if name not in _SUBREGISTERS:
            raise DomainCrash(f"cannot emulate an operand in {name}")
        full, mask = _SUBREGISTERS[name]
        return self.domain.vcpu.get(GPRS_BY_NAME[full]) & mask

    def _read(self, vaddr: int, size: int) -> bytes:
        try:
            return self.domain.copy_from_guest(vaddr, size)
        except HypercallError as refusal:
            raise DomainCrash(f"the kernel's {size}-byte operand at {vaddr:#x}: "
                              f"{refusal.why}") from None

    def _write(self, vaddr: int, data: bytes) -> None:
        try:
            self.domain.copy_to_guest(vaddr, data)
        except HypercallError as refusal:
            raise DomainCrash(f"the kernel's operand at {vaddr:#x}: {refusal.why}") from None


def _is_tss(desc: int) -> bool:
    if not desc >> 47 & 1 or desc >> 44 & 1:
        return False
    return (desc >> 40) & 0xF in (TSS_AVAILABLE, TSS_BUSY)
