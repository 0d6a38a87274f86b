"""Emulating privileged instructions for a PV domain, as Xen's emulate_privileged_op
does: on a trap site the patcher recorded (an int3 standing for the original
instruction), and on the #GP an unpatched privileged instruction raises in ring 1.

What is emulated is one explicit table, PV_HANDLERS: catalogue class -> handler, a
function of (emulator, instruction). A class with no handler is not emulated: its #GP
is the guest's. A trap site may stand for exactly the classes of this table
(abi/pvtool.py TRAP_SITE_CLASSES, which the patcher checks its rules against), and
that is checked when this module is imported, so a missing handler fails at start-up
rather than as a domain crash in front of a user. The trap-and-emulate mode's table
extends this one (hv/trapemulate.py).

A patched kernel keeps its virtual control registers in a block of its own memory
(the pvtool note `vcpu_regs`), which its stubs read without exits; the emulator uses
the same block, so a trap site and a stub always agree. A kernel without one (written
for Xen, or unpatched) gets registers kept by the hypervisor.
"""

import struct
from collections.abc import Callable, Mapping

from capstone.x86_const import X86_OP_MEM, X86_OP_REG

from pvtool.abi import pvtool as pvabi
from pvtool.abi.pvtool import TRAP_SITE_CLASSES, VCPU_REGS
from pvtool.abi.xen import GUEST_KERNEL_RPL, XEN_VERSION
from pvtool.hv import emulate_msrs
from pvtool.hv.domain import Domain
from pvtool.hv.emulate_msrs import GeneralProtection
from pvtool.hv.emulate_segments import RING_ENTERED, mov_to_ss, pop_ss, sysexit, sysret
from pvtool.hv.errors import DomainCrash, HypercallError, NotEmulated
from pvtool.hv.hypercalls.traps import iret as hypervisor_iret
from pvtool.hv.ioports import iopl_ok
from pvtool.hv.task_switch import refuse_task_switch
from pvtool.machine.cpu import EAX, EBX, ECX, EDX, EIP, ESP, GPRS_BY_NAME
from pvtool.machine.memory import PageFault
from pvtool.machine.stop import Stop, StopKind
from pvtool.x86.catalogue import BY_NAME, classify, memory_operand
from pvtool.x86.isa import MAX_INSN_SIZE, OPERAND_SIZE_PREFIX, decode_one
from pvtool.x86.operands import special_register_move
from pvtool.x86.paging import PAGE_SIZE
from pvtool.x86.registers import (
    CR0_PG,
    CR0_TS,
    EFLAGS_IF,
    EFLAGS_NT,
    EFLAGS_RF,
    EFLAGS_VM,
)

# Debug registers at reset (SDM Vol. 3B, 17.2): DR6 and DR7 have fixed bits set.
DEBUG_REGISTERS_AT_RESET = {6: 0xFFFF0FF0, 7: 0x400}

# Xen's forced-emulation prefix (ud2; "xen") before a cpuid: "emulate this cpuid".
FORCED_CPUID = bytes.fromhex("0f0b78656e") + bytes.fromhex("0fa2")

# A register operand as capstone names it -> (the 32-bit register, its width mask).
_SUBREGISTERS = {name: (name, 0xFFFFFFFF) for name in GPRS_BY_NAME} | {
    name[1:]: (name, 0xFFFF) for name in GPRS_BY_NAME}


def _regs(text: bytes) -> tuple[int, int, int]:
    return struct.unpack("<3I", text)


# The CPUID a PV kernel is shown, fixed so runs are reproducible: leaf -> (EAX, EBX,
# ECX, EDX); any other leaf reads as zeros. Leaf 1: family 6 model 6, FPU TSC MSR PAE
# CX8 CMOV MMX FXSR SSE SSE2 and the hypervisor bit (ECX 31); 0x80000001: RDTSCP (EDX
# 27), which Unicorn's CPU runs (the virtual TSC, machine/pc.py). 0x40000000-2 are Xen's:
# the "XenVMMXenVMM" signature and the last leaf, the version (major << 16 | minor),
# and one hypercall page with its MSR at 0x40000000.
CPUID_LEAVES = {
    0: (1, *_regs(b"GenuntelineI")),
    1: (0x663, 0, 1 << 31, 0x0780_8171),
    0x4000_0000: (0x4000_0002, *_regs(b"XenVMMXenVMM")),
    0x4000_0001: (XEN_VERSION[0] << 16 | XEN_VERSION[1], 0, 0, 0),
    0x4000_0002: (1, 0x4000_0000, 0, 0),
    0x8000_0000: (0x8000_0001, 0, 0, 0),
    0x8000_0001: (0, 0, 0, 1 << 27),
}

# A handler returns None to go on after the instruction, an address to go on at (an
# emulated iret), or RING_ENTERED when it has entered another ring itself.
Handler = Callable[["Emulator", object], object]


class ControlRegisters:
    """The kernel's virtual CR0/CR3/CR4: in its own memory, or the hypervisor's."""

    def __init__(self, domain: Domain, block: int | None):
        self.domain = domain
        self.block = block
        self.private = {"cr0": 0x80000011, "cr3": 0, "cr4": 0, "ldtr": 0, "tr": 0}

    def get(self, name: str) -> int:
        """A control register, or a selector the kernel loaded (ldtr, tr: 16 bits)."""
        if self.block is None and name == "cr3":
            # Xen answers with the current base (a kernel written for Xen keeps no
            # copy: it switched with NEW_BASEPTR, or was given pt_base).
            return self.domain.pagetables.base_mfn * PAGE_SIZE
        if self.block is None:
            return self.private[name]
        field = VCPU_REGS.fields[name]
        return struct.unpack("<" + field.fmt, self.domain.copy_from_guest(
            self.block + field.offset, field.size))[0]

    def gdtr(self) -> tuple[int, int] | None:
        """(limit, base) of the GDT the kernel last loaded, if it keeps a regs block."""
        if self.block is None:
            return None
        return struct.unpack("<HI", self.get("gdtr"))

    def set(self, name: str, value: int) -> None:
        if self.block is None:
            self.private[name] = value
        else:
            field = VCPU_REGS.fields[name]
            self.domain.copy_to_guest(self.block + field.offset, struct.pack(
                "<" + field.fmt, value & (1 << 8 * field.size) - 1))


class Emulator:
    def __init__(self, domain: Domain, trap_sites: dict[int, bytes], regs_block: int | None):
        self.domain = domain
        self.trap_sites = trap_sites  # int3 address -> the original instruction's bytes
        self.regs = ControlRegisters(domain, regs_block)
        self.handlers: Mapping[str, Handler] = PV_HANDLERS
        # A kernel written for Xen (no pvtool notes: no regs block, no trap sites) gets
        # Xen's answers on a #GP; a patched PC kernel keeps the PC's (docs/ABI.md).
        patched = regs_block is not None or bool(trap_sites)
        self.fault_handlers: Mapping[str, Handler] = {} if patched else XEN_FAULT_HANDLERS
        self.msrs: dict[int, int] = {}
        self.debug_registers = dict(DEBUG_REGISTERS_AT_RESET)
        self.emulated: dict[str, int] = {}

    # -- entry points --------------------------------------------------------------------
    def is_trap_site(self, address: int) -> bool:
        return address in self.trap_sites

    def emulate_trap_site(self, address: int) -> None:
        original = self.trap_sites[address]
        insn = decode_one(original, address, self.domain.machine.cpu.bits)
        try:
            if insn is None:
                raise NotEmulated("its bytes are no instruction")
            self._emulate(insn)
        except NotEmulated as refused:
            raise DomainCrash(f"trap site {address:#010x} ({original.hex()}) cannot be "
                              f"emulated: {refused}") from None

    def forced_cpuid(self, eip: int) -> bool:
        """The #UD of Xen's forced-emulation prefix: answer the cpuid after it from
        CPUID_LEAVES and go on past both; False if EIP holds anything else."""
        try:
            code = self.domain.memory.read_virt(eip, len(FORCED_CPUID))
        except PageFault:
            return False
        if code != FORCED_CPUID:
            return False
        vcpu = self.domain.vcpu
        leaf = CPUID_LEAVES.get(vcpu.get(EAX), (0, 0, 0, 0))
        for reg, value in zip((EAX, EBX, ECX, EDX), leaf, strict=True):
            vcpu.set(reg, value)
        vcpu.set(EIP, eip + len(FORCED_CPUID))
        self.emulated["cpuid"] = self.emulated.get("cpuid", 0) + 1
        return True

    def emulate_privileged(self, eip: int) -> bool:
        """Emulate the instruction at EIP if it is one Xen emulates; False to bounce the
        #GP (and for an instruction Xen answers with #GP(0), as the MSRs it does not
        expose, or cli/sti without I/O privilege)."""
        try:
            code = self.domain.memory.read_virt(eip, MAX_INSN_SIZE)
        except PageFault:
            return False
        insn = decode_one(code, eip, self.domain.machine.cpu.bits)
        if insn is None:
            return False
        try:
            self._emulate(insn, self.fault_handlers)
        except GeneralProtection:
            return False
        except NotEmulated:
            refuse_task_switch(self, insn)
            return False
        return True

    # -- dispatch ------------------------------------------------------------------------
    def _emulate(self, insn, overrides: Mapping[str, Handler] | None = None) -> None:
        """Run the handler of INSN's class (from OVERRIDES first) and go on where it
        says; NotEmulated if the class has none or the handler refuses."""
        cls = classify(insn)
        handler = None
        if cls is not None:
            handler = (overrides or {}).get(cls.name) or self.handlers.get(cls.name)
        if handler is None:
            raise NotEmulated(f"no handler for {insn.mnemonic} {insn.op_str}".rstrip())
        try:
            resume = handler(self, insn)
        except HypercallError as refusal:
            raise DomainCrash(f"emulating {insn.mnemonic} {insn.op_str} at "
                              f"{insn.address:#x}: {refusal.why}") from None
        self.emulated[cls.name] = self.emulated.get(cls.name, 0) + 1
        if self.domain.trace:
            self.domain.log(f"emulate {insn.mnemonic} {insn.op_str}".rstrip()
                            + f" at {insn.address:#x}")
        if resume is not RING_ENTERED and self.domain.machine.stop is None:
            self.domain.vcpu.set(EIP, insn.address + insn.size if resume is None else resume)

    # -- operands ------------------------------------------------------------------------
    def gpr(self, insn) -> int:
        """The general register of a mov to or from a control or debug register."""
        return self.domain.vcpu.get(GPRS_BY_NAME[special_register_move(insn).gpr])

    def set_gpr(self, insn, value: int) -> None:
        self.domain.vcpu.set(GPRS_BY_NAME[special_register_move(insn).gpr], value)

    def address(self, insn) -> int:
        """The linear address of the memory operand (segments are flat)."""
        mem = memory_operand(insn)
        address = mem.disp
        if mem.base:
            address += self.register(mem.base)
        if mem.index:
            address += self.register(mem.index) * mem.scale
        return address & 0xFFFFFFFF

    def source16(self, insn) -> int:
        """The 16-bit value of a one-operand instruction's (or a mov's) register or
        memory source: a selector, or lmsw's word."""
        op = insn.operands[-1]
        if op.type == X86_OP_REG:
            return self.register(insn.reg_name(op.reg)) & 0xFFFF
        if op.type == X86_OP_MEM:
            return struct.unpack("<H", self.read(self.address(insn), 2))[0]
        raise DomainCrash(f"cannot emulate {insn.mnemonic} {insn.op_str}")

    def register(self, name: str) -> int:
        full, mask = self._subregister(name)
        return self.domain.vcpu.get(GPRS_BY_NAME[full]) & mask

    def set_register(self, name: str, value: int) -> None:
        """Write NAME, a general register or its low 16 bits (the rest kept)."""
        full, mask = self._subregister(name)
        reg = GPRS_BY_NAME[full]
        self.domain.vcpu.set(reg, self.domain.vcpu.get(reg) & ~mask | value & mask)

    @staticmethod
    def _subregister(name: str) -> tuple[str, int]:
        if name not in _SUBREGISTERS:
            raise DomainCrash(f"cannot emulate an operand in {name}")
        return _SUBREGISTERS[name]

    def read(self, vaddr: int, size: int) -> bytes:
        try:
            return self.domain.copy_from_guest(vaddr, size)
        except HypercallError as refusal:
            raise DomainCrash(f"the kernel's {size}-byte operand at {vaddr:#x}: "
                              f"{refusal.why}") from None

    def write(self, vaddr: int, data: bytes) -> None:
        try:
            self.domain.copy_to_guest(vaddr, data)
        except HypercallError as refusal:
            raise DomainCrash(f"the kernel's operand at {vaddr:#x}: {refusal.why}") from None


# -- the instructions ----------------------------------------------------------------------
def mask_events(em: Emulator, insn) -> None:
    em.domain.upcall_mask = 1


def unmask_events(em: Emulator, insn) -> None:
    em.domain.upcall_mask = 0


def halt(em: Emulator, insn) -> None:
    """Wait for the next event, as SCHEDOP_block does; with the virtual IF clear
    nothing can ever wake the vCPU. One of several vCPUs leaves the CPU to the others
    (hv/scheduler.py) until an event is raised on it."""
    if len(em.domain.vcpus) > 1:
        em.domain.scheduler.block(em.domain.vcpu)
    elif em.domain.upcall_mask:
        em.domain.machine.request_stop(
            Stop(StopKind.HALTED, "hlt with events masked", insn.address))
    else:
        em.domain.machine.block()


def leave_caches(em: Emulator, insn) -> None:
    """wbinvd, invd: caches are the hypervisor's, nothing to do."""


def clear_task_switched(em: Emulator, insn) -> None:
    em.domain.fpu_ts = False
    em.regs.set("cr0", em.regs.get("cr0") & ~CR0_TS)


def invalidate_page(em: Emulator, insn) -> None:
    em.domain.pagetables.flush_tlb_page(em.address(insn))


def read_cr0(em: Emulator, insn) -> None:
    em.set_gpr(insn, em.regs.get("cr0"))


def read_cr3(em: Emulator, insn) -> None:
    em.set_gpr(insn, em.regs.get("cr3"))


def read_cr4(em: Emulator, insn) -> None:
    em.set_gpr(insn, em.regs.get("cr4"))


def read_cr2(em: Emulator, insn) -> None:
    vcpu_cr2 = pvabi.vcpu0_field_va(False, "cr2")
    em.set_gpr(insn, struct.unpack("<I", em.domain.memory.read_virt(vcpu_cr2, 4))[0])


def write_cr2(em: Emulator, insn) -> None:
    """CR2 is the kernel's scratch copy in vcpu_info, as Xen's write to ctrlreg[2]."""
    em.domain.set_cr2(em.gpr(insn))


def write_cr3(em: Emulator, insn) -> None:
    value = em.gpr(insn)
    em.regs.set("cr3", value)
    if em.regs.get("cr0") & CR0_PG:
        em.domain.pagetables.new_baseptr(value >> 12)


def write_cr0(em: Emulator, insn) -> None:
    old, new = em.regs.get("cr0"), em.gpr(insn)
    if old & CR0_PG and not new & CR0_PG:
        raise DomainCrash("the kernel turned paging off, which a PV domain cannot do")
    em.regs.set("cr0", new)
    em.domain.fpu_ts = bool(new & CR0_TS)
    if new & CR0_PG and not old & CR0_PG:
        em.domain.pagetables.new_baseptr(em.regs.get("cr3") >> 12)


def write_cr4(em: Emulator, insn) -> None:
    em.regs.set("cr4", em.gpr(insn))


def write_debug_register(em: Emulator, insn) -> None:
    """Xen emulates debug-register moves for a PV kernel (set_debugreg); the values
    are kept, breakpoints are not armed (Unicorn has no debug unit)."""
    em.debug_registers[special_register_move(insn).number] = em.gpr(insn)


def read_debug_register(em: Emulator, insn) -> None:
    em.set_gpr(insn, em.debug_registers.get(special_register_move(insn).number, 0))


def read_msr(em: Emulator, insn) -> None:
    value = em.msrs.get(em.domain.vcpu.get(ECX), 0)
    em.domain.vcpu.set(EAX, value & 0xFFFFFFFF)
    em.domain.vcpu.set(EDX, value >> 32)


def write_msr(em: Emulator, insn) -> None:
    vcpu = em.domain.vcpu
    em.msrs[vcpu.get(ECX)] = vcpu.get(EDX) << 32 | vcpu.get(EAX)


def push_flags(em: Emulator, insn) -> None:
    """pushf: EFLAGS with IF from the upcall mask, as the pushf rule's glue
    (pv_pushf_fixup) gives it; the virtual IF of a PV vCPU is !evtchn_upcall_mask
    (xen/include/public/xen.h, struct vcpu_info). The image has VM and RF clear (SDM
    Vol. 2, PUSHF/PUSHFD); with an operand-size prefix only its low 16 bits."""
    vcpu = em.domain.vcpu
    virtual_if = 0 if em.domain.upcall_mask else EFLAGS_IF
    image = vcpu.eflags & ~(EFLAGS_IF | EFLAGS_RF | EFLAGS_VM) | virtual_if
    size = _operand_size(insn)
    esp = vcpu.esp - size
    em.write(esp, image.to_bytes(4, "little")[:size])
    vcpu.set(ESP, esp)


def interrupt_return(em: Emulator, insn) -> object:
    """iret, as the iret rule's glue does it: the frame's ring-0 CS gets the kernel's
    RPL 1 (pv_iret), then HYPERVISOR_iret pops it with EAX pushed on top, as the
    hypercall page's iret entry pushes it (xen/arch/x86/pv/iret.c, compat_iret:
    back to ring 1 on this stack, or to ring 3 on the frame's; the virtual IF from the
    frame's IF). With EFLAGS.NT set an iret is a return to the previous task (SDM Vol.
    2, IRET), a hardware task switch Xen's PV ABI has no counterpart of: refused."""
    vcpu = em.domain.vcpu
    if vcpu.eflags & EFLAGS_NT:
        raise NotEmulated("EFLAGS.NT is set: a task return (hardware task switch), "
                          "which a PV domain cannot make")
    if _operand_size(insn) != 4:
        raise NotEmulated("a 16-bit iret")
    esp = vcpu.esp
    (cs,) = struct.unpack("<I", em.read(esp + 4, 4))
    if not cs & 3:
        em.write(esp + 4, struct.pack("<I", cs | GUEST_KERNEL_RPL))
    em.write(esp - 4, struct.pack("<I", vcpu.get(EAX)))
    vcpu.set(ESP, esp - 4)
    hypervisor_iret(em.domain, vcpu, ())
    return RING_ENTERED


def store_ldtr(em: Emulator, insn) -> None:
    _store_selector(em, insn, em.regs.get("ldtr"))


def store_tr(em: Emulator, insn) -> None:
    _store_selector(em, insn, em.regs.get("tr"))


def _store_selector(em: Emulator, insn, selector: int) -> None:
    """sldt, str: the selector the kernel last loaded with lldt or ltr, as the rules'
    templates read it from the regs block. SDM Vol. 2, SLDT/STR: to memory 16 bits;
    into a 32-bit register zero-extended, into a 16-bit one its low half only."""
    op = insn.operands[0]
    if op.type == X86_OP_MEM:
        if memory_operand(insn).segment:
            raise NotEmulated("segment overrides are not emulated")
        em.write(em.address(insn), struct.pack("<H", selector))
    else:
        em.set_register(insn.reg_name(op.reg), selector)


def _operand_size(insn) -> int:
    """4, or 2 with an operand-size prefix (pushf, iret: 66 9c, 66 cf)."""
    return 2 if insn.prefix[2] == OPERAND_SIZE_PREFIX else 4


def xen_rdmsr(em: Emulator, insn) -> None:
    vcpu = em.domain.vcpu
    value = emulate_msrs.read(em.domain, vcpu.get(ECX))
    vcpu.set(EAX, value & 0xFFFFFFFF)
    vcpu.set(EDX, value >> 32)


def xen_wrmsr(em: Emulator, insn) -> None:
    vcpu = em.domain.vcpu
    emulate_msrs.write(em.domain, vcpu.get(ECX), vcpu.get(EDX) << 32 | vcpu.get(EAX))


def xen_cli_sti(em: Emulator, insn) -> None:
    """A ring-1 cli or sti, as emul-priv-op.c's validate() takes it: #GP(0) unless
    iopl_ok(), and then done without effect (Xen leaves the upcall mask alone: a
    kernel written for Xen masks events in vcpu_info). iopl_ok: the kernel counts as
    CPL 1, or as CPL 0 under VMASST_TYPE_architectural_iopl, against the virtual IOPL
    physdev_op set_iopl gave it."""
    dom = em.domain
    if not iopl_ok(dom, GUEST_KERNEL_RPL):
        raise GeneralProtection(f"{insn.mnemonic} at virtual IOPL {dom.iopl}")


def xen_read_debug_register(em: Emulator, insn) -> None:
    """x86emul_read_dr: the vCPU's registers (hv/debugreg.py), DR6 as the last #DB
    left it, DR4/DR5 aliasing DR6/DR7 (CR4.DE is clear)."""
    number = special_register_move(insn).number
    em.set_gpr(insn, em.domain.debug_registers.read(number))


def xen_write_debug_register(em: Emulator, insn) -> None:
    """x86emul_write_dr: set_debugreg's checks, a refusal (DR7.GD, an I/O breakpoint)
    #GP(0); the breakpoints DR7 enables are armed (hv/breakpoints.py)."""
    number = special_register_move(insn).number
    try:
        em.domain.debug_registers.write(number, em.gpr(insn))
    except HypercallError as refusal:
        raise GeneralProtection(f"mov to dr{number}: {refusal.why}") from None


XEN_FAULT_HANDLERS: dict[str, Handler] = {
    "rdmsr": xen_rdmsr, "wrmsr": xen_wrmsr, "cli": xen_cli_sti, "sti": xen_cli_sti,
    "mov_from_dr": xen_read_debug_register, "mov_to_dr": xen_write_debug_register,
}

# The PV emulator: catalogue class -> handler.
PV_HANDLERS: dict[str, Handler] = {
    "cli": mask_events, "sti": unmask_events, "hlt": halt,
    "wbinvd": leave_caches, "invd": leave_caches,
    "clts": clear_task_switched, "invlpg": invalidate_page,
    "mov_from_cr0": read_cr0, "mov_to_cr0": write_cr0,
    "mov_from_cr2": read_cr2, "mov_to_cr2": write_cr2,
    "mov_from_cr3": read_cr3, "mov_to_cr3": write_cr3,
    "mov_from_cr4": read_cr4, "mov_to_cr4": write_cr4,
    "mov_from_dr": read_debug_register, "mov_to_dr": write_debug_register,
    "rdmsr": read_msr, "wrmsr": write_msr,
    "mov_to_ss": mov_to_ss, "pop_ss": pop_ss, "sysexit": sysexit, "sysret": sysret,
    "pushf": push_flags, "iret": interrupt_return, "sldt": store_ldtr, "str": store_tr,
}


def check_handlers(table: Mapping[str, Handler], must_cover: frozenset[str],
                   exactly: bool) -> None:
    """A table of handlers names only catalogue classes and covers MUST_COVER (and
    nothing else if EXACTLY); a mismatch is pvtool's own bug, raised at import."""
    unknown = sorted(set(table) - set(BY_NAME))
    missing = sorted(must_cover - set(table))
    extra = sorted(set(table) - must_cover) if exactly else []
    if unknown or missing or extra:
        raise ImportError(f"emulator table: not catalogue classes {unknown}, no handler "
                          f"for {missing}, handlers beyond TRAP_SITE_CLASSES {extra}")


check_handlers(PV_HANDLERS, TRAP_SITE_CLASSES, exactly=True)
