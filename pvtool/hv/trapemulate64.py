"""The privileged instructions of an UNMODIFIED 64-bit kernel, emulated against a
virtual CPU: trap-and-emulate's 64-bit half (hv/trapmode64.py runs the kernel).

The kernel runs at CPL 3, as Xen runs a 64-bit PV kernel (XEN-ABI64.md 1.1), so
every instruction of XEN-ABI64.md 2.5 raises #GP(0) and lands here: mov to and from
CR0/CR2/CR3/CR4, cli/sti (the virtual IF), hlt, swapgs, rdmsr/wrmsr (EFER, STAR,
LSTAR, CSTAR, FMASK, the FS and GS bases), lgdt/lidt/ltr (virtual registers: pvtool
delivers every interrupt itself, through the kernel's own IDT), invlpg, wbinvd,
clts, and the far transfers that name the kernel's ring-0 selectors: iretq and
lretq to them, `mov ss`, and sysretq.

Segments. The real GDT is the hypervisor's and never holds the kernel's descriptors,
so the CPU refuses every load of the kernel's selectors (#GP or #NP) and each one is
emulated here: the segment cache is loaded from the kernel's own descriptor with
its DPL raised to 3 and the selector's RPL 3 (a kernel that reads CS sees RPL 3: a
hole, as on 32-bit). An iretq or sysretq to ring 3 switches the vCPU to user mode,
with the user's page tables (hv/trapmode64.py, Vcpu64.kernel_mode as on Xen).

The virtual IF is the domain's upcall mask (mask = !IF) and the real IF follows it,
as in 32-bit trap mode (hv/trapemulate.py says why it may). popfq and pushfq do not
fault at CPL 3: popfq leaves IF alone, pushfq shows the real IF; sgdt, sidt, str and
smsw show the hypervisor's registers.
"""

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from capstone.x86 import X86_OP_REG

from pvtool.abi.xen64 import FLAT_RING3_CS64, FLAT_RING3_SS64
from pvtool.hv import layout64
from pvtool.hv.errors import DomainCrash, HypercallError
from pvtool.hv.trapemulate import VirtualCpu
from pvtool.machine.context import DESC_DPL_SHIFT, SS_INDEX, SegmentCache
from pvtool.machine.cpu import (
    FS_BASE,
    GPRS64_BY_NAME,
    GS_BASE,
    R11,
    RAX,
    RCX,
    RDX,
    RFLAGS,
    RIP,
    RSP,
)
from pvtool.machine.memory import PageFault, UnassignedMemory
from pvtool.machine.stop import Stop, StopKind
from pvtool.x86 import msrs
from pvtool.x86.descriptors import SegmentDescriptor, SystemType, gdt_offset
from pvtool.x86.isa import MAX_INSN_SIZE, decode_one
from pvtool.x86.msrs import EFER_LMA, EFER_LME, EFER_NXE, EFER_SCE, IA32_EFER
from pvtool.x86.operands import memory_operand, special_register_move
from pvtool.x86.paging import PAGE_SHIFT, is_canonical
from pvtool.x86.registers import CR0_PE, CR0_PG, CR0_TS, CR4_PAE, EFLAGS_IF, EFLAGS_IOPL

SYSCALL_MSRS = (msrs.STAR, msrs.LSTAR, msrs.CSTAR, msrs.SFMASK)
EFER_WRITABLE = EFER_SCE | EFER_LME | EFER_NXE
CR0_ET = 1 << 4
# What a Multiboot stub leaves when it jumps to the 64-bit entry (guests/lib64/entry.S):
# protected mode and paging on (ET is the reset value's), PAE, long mode active.
CR0_AT_ENTRY64 = CR0_PG | CR0_ET | CR0_PE
CR4_AT_ENTRY64 = CR4_PAE
EFER_AT_ENTRY64 = EFER_LME | EFER_LMA
USER_RPL = 3
RFLAGS_RESERVED = 1 << 1
TSS64_SIZE = 16  # a 64-bit TSS descriptor takes two GDT slots (SDM 7.2.3)
# The flat 64-bit code and data a CPL-3 guest runs on: Xen's ring-3 descriptors.
FLAT_CODE, FLAT_DATA = (
    SegmentDescriptor.decode(struct.pack("<Q", layout64.reserved_gdt_entries()[sel >> 3]))
    for sel in (FLAT_RING3_CS64, FLAT_RING3_SS64))


class GeneralProtection(Exception):
    """The instruction faults on the real CPU too: the #GP goes to the kernel."""


@dataclass
class VirtualCpu64(VirtualCpu):
    """The system registers the kernel believes it loaded: 32-bit trap mode's, and
    the control registers, EFER, the syscall MSRs and the TSS's limit."""

    cr0: int = CR0_AT_ENTRY64
    cr2: int = 0
    cr3: int = 0
    cr4: int = CR4_AT_ENTRY64
    efer: int = EFER_AT_ENTRY64
    msrs: dict[int, int] = field(default_factory=lambda: dict.fromkeys(SYSCALL_MSRS, 0))
    kernel_gs_base: int = 0  # the inactive GS base swapgs brings in
    tss_limit: int = 0


class TrapEmulator64:
    """Decodes the instruction at a #GP's RIP and emulates it by mnemonic (HANDLERS);
    counts what it emulated by address, for the sensitive-instruction report."""

    def __init__(self, domain, modes):
        """MODES switches the vCPU between kernel and user mode (trapmode64.Modes)."""
        self.domain = domain
        self.cpu = domain.machine.cpu
        self.modes = modes
        self.vcpu = VirtualCpu64()
        self.emulated_at: dict[int, int] = {}
        self.last_mnemonic = ""

    def emulate_privileged(self, rip: int) -> bool:
        """Emulate the instruction at RIP; False leaves the #GP to the kernel."""
        try:
            insn = decode_one(self.domain.memory.read_virt(rip, MAX_INSN_SIZE), rip, 64)
        except (PageFault, UnassignedMemory):
            return False
        handler = None if insn is None else handler_for(insn)
        if handler is None:
            return False
        try:
            resume = handler(self, insn)
        except GeneralProtection:
            return False
        self.emulated_at[rip] = self.emulated_at.get(rip, 0) + 1
        self.last_mnemonic = insn.mnemonic
        if self.domain.trace:
            self.domain.log(f"emulate {insn.mnemonic} {insn.op_str} at {rip:#x}".rstrip())
        self.cpu.write(RIP, rip + insn.size if resume is None else resume)
        return True

    # -- operands ------------------------------------------------------------------------
    def register(self, name: str) -> int:
        return self.cpu.read(GPRS64_BY_NAME[_full_register(name)])

    def set_register(self, name: str, value: int) -> None:
        self.cpu.write(GPRS64_BY_NAME[_full_register(name)], value & (1 << 64) - 1)

    def address(self, insn) -> int:
        """The linear address of the memory operand (segments flat, RIP-relative
        counted from the next instruction)."""
        mem = memory_operand(insn)
        address = mem.disp
        if mem.base == "rip":
            address += insn.address + insn.size
        elif mem.base:
            address += self.register(mem.base)
        if mem.index:
            address += self.register(mem.index) * mem.scale
        return address & (1 << 64) - 1

    def read(self, vaddr: int, size: int) -> bytes:
        check_guest_range(self.domain, vaddr, size)
        try:
            return self.domain.memory.read_virt(vaddr, size)
        except (PageFault, UnassignedMemory):
            raise DomainCrash(f"emulating at {self.cpu.read(RIP):#x}: {vaddr:#x} is not "
                              "mapped") from None

    def write(self, vaddr: int, data: bytes) -> None:
        check_guest_range(self.domain, vaddr, len(data))
        try:
            self.domain.memory.write_virt(vaddr, data)
        except (PageFault, UnassignedMemory):
            raise DomainCrash(f"emulating at {self.cpu.read(RIP):#x}: {vaddr:#x} is not "
                              "writable") from None

    def peek(self, count: int) -> tuple[int, ...]:
        """COUNT quadwords from the top of the stack."""
        return struct.unpack(f"<{count}Q", self.read(self.cpu.read(RSP), 8 * count))

    def pop(self, count: int) -> tuple[int, ...]:
        words = self.peek(count)
        self.cpu.write(RSP, self.cpu.read(RSP) + 8 * count)
        return words

    # -- the virtual IF and segments -------------------------------------------------------
    def set_virtual_if(self, enabled: bool) -> None:
        self.domain.upcall_mask = 0 if enabled else 1
        flags = self.cpu.read(RFLAGS)
        self.cpu.write(RFLAGS, flags & ~EFLAGS_IF | (EFLAGS_IF if enabled else 0))

    def descriptor(self, selector: int) -> SegmentDescriptor:
        """SELECTOR's descriptor in the kernel's own GDT; a bad one is the kernel's #GP."""
        offset = gdt_offset(selector, self.vcpu.gdt_limit)
        if offset is None:
            raise GeneralProtection(f"selector {selector:#x} is past the kernel's GDT")
        return SegmentDescriptor.decode(self.read(self.vcpu.gdt_base + offset, 8))

    def segment_cache(self, selector: int, *, code: bool) -> SegmentCache:
        """The cache a load of SELECTOR leaves at CPL 3: the kernel's descriptor with
        DPL 3, the selector with RPL 3. The descriptor's own DPL must be the selector's
        RPL (the ring the kernel believes it loads for), as for a non-conforming
        segment (SDM "IRET", "MOV"). A null SS is allowed (64-bit mode)."""
        if selector & ~3 == 0 and not code:
            return SegmentCache(USER_RPL, 0, 0, USER_RPL << DESC_DPL_SHIFT)
        desc = self.descriptor(selector)
        if not desc.present or not desc.s or desc.is_code != code \
                or code and not desc.long or desc.dpl != selector & 3:
            raise GeneralProtection(f"selector {selector:#x} is not a 64-bit "
                                    f"{'code' if code else 'data'} segment of its ring")
        cache = SegmentCache.of(selector | USER_RPL, desc)
        flags = cache.flags & ~(3 << DESC_DPL_SHIFT) | USER_RPL << DESC_DPL_SHIFT
        return SegmentCache(cache.selector, cache.base, cache.limit, flags)

    def load_flat_segments(self, cs: int, ss: int) -> None:
        """syscall's and sysret's CS and SS: fixed flat caches, the GDT unread (SDM
        "SYSCALL", "SYSRET"), at CPL 3 with RPL 3."""
        self.cpu.load_segments(SegmentCache.of(cs | USER_RPL, FLAT_CODE),
                               SegmentCache.of(ss | USER_RPL, FLAT_DATA))

    def resume_with_flags(self, rflags: int) -> None:
        """RFLAGS as popped by a return: IF becomes the virtual IF, IOPL stays 0."""
        enabled = bool(rflags & EFLAGS_IF)
        self.domain.upcall_mask = 0 if enabled else 1
        self.cpu.write(RFLAGS, rflags & ~EFLAGS_IOPL | RFLAGS_RESERVED)


def check_guest_range(domain, vaddr: int, size: int) -> None:
    """A pointer the kernel gave (a table, a frame, a stack) must stay out of the
    hypervisor's range: the hypervisor reads and writes for it with its own rights."""
    if not domain.pagetables.rules.is_guest_range(vaddr, size):
        raise DomainCrash(f"the kernel's {vaddr:#x}+{size:#x} reaches the hypervisor's "
                          "range")


def _full_register(name: str) -> str:
    """The 64-bit register NAME is part of: rax for eax, ax or al, r8 for r8d."""
    if name in GPRS64_BY_NAME:
        return name
    if name[1].isdigit():
        return name.rstrip("dwb")
    if name.startswith("e"):
        return "r" + name[1:]
    if name.endswith(("l", "h")) and name not in ("sil", "dil", "bpl", "spl"):
        return f"r{name[0]}x"
    return "r" + name.rstrip("l")


# -- the virtual IF, hlt ----------------------------------------------------------------
def clear_virtual_if(em: TrapEmulator64, insn) -> None:
    em.set_virtual_if(False)


def set_virtual_if(em: TrapEmulator64, insn) -> None:
    em.set_virtual_if(True)


def halt(em: TrapEmulator64, insn) -> None:
    """Wait for an interrupt; with the virtual IF clear none can ever come."""
    machine = em.domain.machine
    if em.domain.upcall_mask:
        machine.request_stop(Stop(StopKind.HALTED, "hlt with interrupts disabled",
                                  insn.address))
    else:
        machine.block()


def nothing(em: TrapEmulator64, insn) -> None:
    """wbinvd, invd: the caches are the hypervisor's."""


def clear_task_switched(em: TrapEmulator64, insn) -> None:
    em.vcpu.cr0 &= ~CR0_TS


def invalidate_page(em: TrapEmulator64, insn) -> None:
    em.domain.pagetables.flush_tlb_page(em.address(insn))


# -- control registers ----------------------------------------------------------------------
def move_control_register(em: TrapEmulator64, insn) -> None:
    move = special_register_move(insn)
    if move.bank != "cr" or move.number not in (0, 2, 3, 4):
        raise GeneralProtection(f"mov {move.register}")
    name = f"cr{move.number}"
    if not move.write:
        em.set_register(move.gpr, getattr(em.vcpu, name))
        return
    value = em.register(move.gpr)
    if move.number == 3:
        load_cr3(em, value)
    elif move.number == 0 and (value & (CR0_PG | CR0_PE)) != (CR0_PG | CR0_PE):
        raise DomainCrash(f"mov cr0 of {value:#x} leaves long mode, which trap-and-emulate "
                          "does not model")
    setattr(em.vcpu, name, value)


def load_cr3(em: TrapEmulator64, value: int) -> None:
    """The kernel's own L4 becomes the base, validated as MMUEXT_NEW_BASEPTR's; one
    Xen would refuse crashes the domain (a PC would run on it: no fault to give)."""
    try:
        em.modes.new_kernel_base(value >> PAGE_SHIFT)
    except HypercallError as refusal:
        raise DomainCrash(f"mov cr3 of {value:#x}: {refusal.why}") from None


# -- MSRs --------------------------------------------------------------------------------------
def read_msr(em: TrapEmulator64, insn) -> None:
    msr = em.cpu.read(RCX) & 0xFFFFFFFF
    value = _msr_value(em, msr)
    em.cpu.write(RAX, value & 0xFFFFFFFF)
    em.cpu.write(RDX, value >> 32)


def _msr_value(em: TrapEmulator64, msr: int) -> int:
    if msr == IA32_EFER:
        return em.vcpu.efer
    if msr == msrs.FS_BASE:
        return em.cpu.read(FS_BASE)
    if msr == msrs.GS_BASE:
        return em.cpu.read(GS_BASE)
    if msr == msrs.KERNEL_GS_BASE:
        return em.vcpu.kernel_gs_base
    if msr in em.vcpu.msrs:
        return em.vcpu.msrs[msr]
    raise GeneralProtection(f"rdmsr {msr:#x}")


def write_msr(em: TrapEmulator64, insn) -> None:
    msr = em.cpu.read(RCX) & 0xFFFFFFFF
    value = (em.cpu.read(RDX) & 0xFFFFFFFF) << 32 | em.cpu.read(RAX) & 0xFFFFFFFF
    if msr in (msrs.FS_BASE, msrs.GS_BASE, msrs.KERNEL_GS_BASE, msrs.LSTAR, msrs.CSTAR) \
            and not is_canonical(value):
        raise GeneralProtection(f"wrmsr {msr:#x} of non-canonical {value:#x}")
    if msr == IA32_EFER:
        if value & ~(EFER_WRITABLE | EFER_LMA) or not value & EFER_LME:
            raise GeneralProtection(f"wrmsr EFER of {value:#x}")
        em.vcpu.efer = value & EFER_WRITABLE | EFER_LMA
    elif msr == msrs.FS_BASE:
        em.cpu.write(FS_BASE, value)
    elif msr == msrs.GS_BASE:
        em.cpu.write(GS_BASE, value)
    elif msr == msrs.KERNEL_GS_BASE:
        em.vcpu.kernel_gs_base = value
    elif msr in em.vcpu.msrs:
        em.vcpu.msrs[msr] = value
    else:
        raise GeneralProtection(f"wrmsr {msr:#x}")


def swap_gs(em: TrapEmulator64, insn) -> None:
    """swapgs exchanges GS's base with msrs.KERNEL_GS_BASE."""
    active = em.cpu.read(GS_BASE)
    em.cpu.write(GS_BASE, em.vcpu.kernel_gs_base)
    em.vcpu.kernel_gs_base = active


# -- descriptor tables ---------------------------------------------------------------------
def load_gdt(em: TrapEmulator64, insn) -> None:
    """Recorded only: the kernel's descriptors are read where its selectors are loaded."""
    limit, base = struct.unpack("<HQ", em.read(em.address(insn), 10))
    em.vcpu.gdt_base, em.vcpu.gdt_limit = base, limit


def load_idt(em: TrapEmulator64, insn) -> None:
    limit, base = struct.unpack("<HQ", em.read(em.address(insn), 10))
    em.vcpu.idt_base, em.vcpu.idt_limit = base, limit


def load_task_register(em: TrapEmulator64, insn) -> None:
    """An available 64-bit TSS of the kernel's GDT, marked busy there as the CPU does."""
    op = insn.operands[0]
    selector = (em.register(insn.reg_name(op.reg)) if op.type == X86_OP_REG
                else struct.unpack("<H", em.read(em.address(insn), 2))[0]) & 0xFFFF
    offset = gdt_offset(selector, em.vcpu.gdt_limit)
    if offset is None or offset + TSS64_SIZE - 1 > em.vcpu.gdt_limit:
        raise GeneralProtection(f"ltr {selector:#x}: past the GDT")
    address = em.vcpu.gdt_base + offset
    low, high = struct.unpack("<QQ", em.read(address, TSS64_SIZE))
    desc = SegmentDescriptor.decode(struct.pack("<Q", low))
    if desc.s or desc.type != SystemType.TSS_AVAILABLE or not desc.present:
        raise GeneralProtection(f"ltr {selector:#x}: not an available 64-bit TSS")
    busy = SystemType.TSS_BUSY ^ SystemType.TSS_AVAILABLE
    em.write(address, struct.pack("<Q", low | busy << 40))
    em.vcpu.tr, em.vcpu.tss_base = selector, desc.base | (high & 0xFFFFFFFF) << 32
    em.vcpu.tss_limit = desc.byte_limit


# -- far transfers -----------------------------------------------------------------------------
def interrupt_return(em: TrapEmulator64, insn) -> int:
    """iretq: to the kernel (a frame's CS with RPL 0, as the frames pvtool pushes
    show it) or to user mode (RPL 3: the user's page tables from here on)."""
    rip, cs, rflags, rsp, ss = em.peek(5)
    if not is_canonical(rip):
        raise GeneralProtection(f"iretq to non-canonical {rip:#x}")
    code = em.segment_cache(cs & 0xFFFF, code=True)
    stack = em.segment_cache(ss & 0xFFFF, code=False)
    em.pop(5)
    if cs & 3 == USER_RPL:
        em.modes.to_user()
    em.cpu.load_segments(code, stack)
    em.cpu.write(RSP, rsp)
    em.resume_with_flags(rflags)
    return rip


def far_return(em: TrapEmulator64, insn) -> int:
    """lretq to the kernel's code segment (how a kernel reloads CS after lgdt)."""
    if insn.operands:
        raise GeneralProtection("lret with an immediate")
    rip, cs = em.peek(2)
    if cs & 3 == USER_RPL or not is_canonical(rip):
        raise GeneralProtection(f"lretq to {cs:#x}:{rip:#x}")
    code = em.segment_cache(cs & 0xFFFF, code=True)
    em.pop(2)
    em.cpu.load_segments(code, em.cpu.segment(SS_INDEX))
    return rip


def load_stack_segment(em: TrapEmulator64, insn) -> None:
    """mov ss with the kernel's ring-0 data selector."""
    op = insn.operands[1]
    selector = (em.register(insn.reg_name(op.reg)) if op.type == X86_OP_REG
                else struct.unpack("<H", em.read(em.address(insn), 2))[0]) & 0xFFFF
    if insn.reg_name(insn.operands[0].reg) != "ss":
        raise GeneralProtection(f"mov {insn.op_str}")
    em.cpu.load_segment_caches({SS_INDEX: em.segment_cache(selector, code=False)})


def system_return(em: TrapEmulator64, insn) -> int:
    """sysretq: to user mode at RCX with R11's flags, CS and SS from STAR[63:48]
    (+16 and +8, RPL 3: SDM "SYSRET")."""
    if not em.vcpu.efer & EFER_SCE:
        raise GeneralProtection("sysret with EFER.SCE clear")
    base = em.vcpu.msrs[msrs.STAR] >> 48 & 0xFFFF
    rip = em.cpu.read(RCX)
    if not is_canonical(rip):
        raise GeneralProtection(f"sysret to non-canonical {rip:#x}")
    em.modes.to_user()
    em.load_flat_segments(base + 16, base + 8)
    em.resume_with_flags(em.cpu.read(R11))
    return rip


def handler_for(insn) -> Callable | None:
    if insn.mnemonic == "mov":
        if special_register_move(insn) is not None:
            return move_control_register
        if insn.operands and insn.operands[0].type == X86_OP_REG \
                and insn.reg_name(insn.operands[0].reg) == "ss":
            return load_stack_segment
        return None
    return HANDLERS.get(insn.mnemonic)


HANDLERS: dict[str, Callable] = {
    "cli": clear_virtual_if, "sti": set_virtual_if, "hlt": halt,
    "wbinvd": nothing, "invd": nothing, "clts": clear_task_switched,
    "invlpg": invalidate_page,
    "rdmsr": read_msr, "wrmsr": write_msr, "swapgs": swap_gs,
    "lgdt": load_gdt, "lidt": load_idt, "ltr": load_task_register,
    "iretq": interrupt_return, "retfq": far_return, "sysretq": system_return,
}
