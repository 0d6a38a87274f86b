"""THE catalogue of x86 privileged and sensitive instructions.

One table, read by the patcher (which sites to rewrite), the hypervisor's emulator (what
an unpatched site means) and diffstat (what a rewrite was for). Patch rules refer to a
class by its `name`, so names are stable.

Two kinds, after Popek & Goldberg and Robin & Irvine ("Analysis of the Intel Pentium's
ability to support a secure virtual machine monitor", USENIX Security 2000):
- PRIVILEGED: the CPU refuses it outside ring 0 (or above IOPL): #GP, so a deprivileged
  kernel traps and a hypervisor could emulate it.
- SENSITIVE: it reads or depends on privileged state but does NOT trap when
  deprivileged; it silently shows the real machine (the real IF, Xen's GDT, ring 1 in
  CS) or silently ignores the change. These are why x86 is not classically
  virtualizable, and why Xen rewrote them rather than trapping them.

`classify` decides from capstone's instruction id and operand register ids. It never
uses capstone's "privilege" group, which is wrong both ways (it omits rdmsr, clts and
lar; it flags `mov ds, eax` and `str`). It does not look at the decoding mode: a
patcher keeps the sites whose class lists the image's mode in `modes`.
"""

import enum
from dataclasses import dataclass

from capstone import x86_const as X

from pvtool.x86.isa import lite_decoder
from pvtool.x86.operands import (
    SEGMENT_REGISTERS,
    MemoryOperand,
    OperandInfo,
    PortAccess,
    RegisterOperand,
    SegmentMove,
    SpecialRegisterMove,
    memory_operand,
    operand_info,
    port_access,
    segment_move,
    special_register_move,
)

__all__ = [
    "CATALOGUE", "BY_NAME", "Kind", "InsnClass", "classify", "may_classify", "by_name",
    "operand_info", "special_register_move", "port_access", "memory_operand",
    "segment_move", "OperandInfo", "SpecialRegisterMove", "PortAccess",
    "MemoryOperand", "SegmentMove", "RegisterOperand", "SEGMENT_REGISTERS",
]  # fmt: skip


class Kind(enum.Enum):
    PRIVILEGED = "privileged"
    SENSITIVE = "sensitive"


@dataclass(frozen=True, slots=True)
class InsnClass:
    name: str  # stable id used by patch rules
    kind: Kind
    modes: frozenset[int]  # 32 and/or 64: where the instruction exists
    summary: str  # what it does natively, at ring 0
    pv: str  # what it means under Xen PV
    faults_when_deprivileged: bool  # #GP at CPL > 0 on real hardware
    why: str  # why it is in the table (manual section or Robin & Irvine's category)


PRIV, SENS = Kind.PRIVILEGED, Kind.SENSITIVE
BOTH, ONLY32, ONLY64 = frozenset((32, 64)), frozenset((32,)), frozenset((64,))
_RING0 = "CPL-0 only: #GP(0) at CPL > 0 (Intel SDM Vol. 2)"
_IOPL = "IOPL-sensitive: #GP(0) when CPL > IOPL (Intel SDM Vol. 2)"
_IO = "IOPL-sensitive: #GP(0) when CPL > IOPL unless the TSS I/O bitmap allows the port"
_RI_REG = "Robin & Irvine: sensitive register instruction, readable at any CPL"
_RI_PROT = "Robin & Irvine: protection-system reference, checks against the real CPL"
_FSGSBASE = ("any CPL when CR4.FSGSBASE = 1, else #UD (Intel SDM Vol. 2, RDFSBASE/WRFSBASE); "
             "a 64-bit PV guest starts with vCR4.FSGSBASE clear: #UD (XEN-ABI64.md 1.6)")
_XEN64 = "XEN-ABI64.md 1.6: Xen's #GP emulation accepts it"


def _row(name, kind, modes, summary, pv, why, faults=None) -> InsnClass:
    faults = kind is PRIV if faults is None else faults
    return InsnClass(name, kind, modes, summary, pv, faults, why)


CATALOGUE: tuple[InsnClass, ...] = (
    # ---- interrupt flag and idling
    _row("cli", PRIV, BOTH, "clears EFLAGS.IF: maskable interrupts are held off",
         "clears the virtual interrupt flag: vcpu_info.evtchn_upcall_mask = 1", _IOPL),
    _row("sti", PRIV, BOTH, "sets EFLAGS.IF (after one more instruction)",
         "sets the virtual interrupt flag: vcpu_info.evtchn_upcall_mask = 0, then any "
         "pending event (evtchn_upcall_pending) is delivered", _IOPL),
    _row("hlt", PRIV, BOTH, "stops the CPU until the next interrupt",
         "blocks the vcpu until an event arrives: sched_op(SCHEDOP_block)", _RING0),
    # ---- descriptor tables and task register
    _row("lgdt", PRIV, BOTH, "loads GDTR from a 6-byte (10 in 64-bit) pseudo-descriptor",
         "registers the GDT's frames, mapped read-only and validated: set_gdt(frames, n)",
         _RING0),
    _row("lidt", PRIV, BOTH, "loads IDTR from a pseudo-descriptor",
         "becomes a trap table: set_trap_table(trap_info[]) built from the IDT's gates",
         _RING0),
    _row("lldt", PRIV, BOTH, "loads LDTR with a selector into the GDT",
         "mmuext_op(MMUEXT_SET_LDT, linear address, entries) of the guest's LDT", _RING0),
    _row("ltr", PRIV, BOTH, "loads the task register (and marks the TSS busy)",
         "has no PV equivalent: the ring-1 stack comes from stack_switch(ss, esp) "
         "instead of the TSS", _RING0),
    # ---- control registers
    _row("mov_to_cr0", PRIV, BOTH, "writes CR0 (PE, PG, WP, TS, caching...)",
         "only TS is the guest's: fpu_taskswitch(TS); pvtool keeps the other bits in a "
         "virtual CR0 (arch_0)", _RING0),
    _row("mov_from_cr0", PRIV, BOTH, "reads CR0",
         "reads the virtual CR0 (arch_0), whose TS follows the last fpu_taskswitch",
         _RING0),
    _row("mov_from_cr2", PRIV, BOTH, "reads the linear address of the last page fault",
         "reads the faulting address Xen saved at the last #PF: vcpu_info.arch.cr2", _RING0),
    _row("mov_to_cr2", PRIV, BOTH, "writes CR2 (only a scratch value for the kernel)",
         "writes vcpu_info.arch.cr2, the guest's own copy; no hypercall", _RING0),
    _row("mov_to_cr3", PRIV, BOTH,
         "switches the page-table base and flushes non-global TLB entries",
         "switches to a pinned, validated top-level table: mmuext_op(MMUEXT_NEW_BASEPTR, "
         "mfn)", _RING0),
    _row("mov_from_cr3", PRIV, BOTH, "reads the page-table base",
         "reads the machine address of the current base table, which the guest tracks "
         "itself", _RING0),
    _row("mov_to_cr4", PRIV, BOTH, "writes CR4 (PSE, PAE, PGE, OSFXSR...)",
         "writes the virtual CR4 (arch_0); Xen owns the real CR4", _RING0),
    _row("mov_from_cr4", PRIV, BOTH, "reads CR4", "reads the virtual CR4 (arch_0)", _RING0),
    _row("mov_to_cr8", PRIV, ONLY64, "writes the task-priority register (64-bit only)",
         "writes a virtual TPR (arch_0); interrupt priority is the hypervisor's", _RING0),
    _row("mov_from_cr8", PRIV, ONLY64, "reads the task-priority register (64-bit only)",
         "reads the virtual TPR (arch_0)", _RING0),
    # ---- debug registers
    _row("mov_to_dr", PRIV, BOTH, "writes a debug register (breakpoints, DR7 enables)",
         "set_debugreg(n, value): Xen checks addresses and DR7 bits", _RING0),
    _row("mov_from_dr", PRIV, BOTH, "reads a debug register",
         "get_debugreg(n)", _RING0),
    # ---- TLB and caches
    _row("invlpg", PRIV, BOTH, "drops the TLB entry of one linear address",
         "flushes one TLB entry: mmuext_op(MMUEXT_INVLPG_LOCAL, va)", _RING0),
    _row("wbinvd", PRIV, BOTH, "writes back and invalidates all caches",
         "emulated after #GP: a no-op for a domain without device access", _RING0),
    _row("invd", PRIV, BOTH, "invalidates all caches WITHOUT writing dirty lines back",
         "emulated after #GP as wbinvd: a guest may never discard dirty lines", _RING0),
    # ---- port I/O
    _row("in", PRIV, BOTH, "reads a byte/word/dword from an I/O port (imm8 or dx)",
         "emulated by the hypervisor after #GP, or replaced by a PV device (shared ring "
         "and event channel)", _IO),
    _row("out", PRIV, BOTH, "writes a byte/word/dword to an I/O port (imm8 or dx)",
         "emulated by the hypervisor after #GP, or replaced by a PV device (shared ring "
         "and event channel)", _IO),
    _row("ins", PRIV, BOTH, "reads port dx into es:[edi], repeated ecx times with rep",
         "emulated element by element after #GP, honouring rep and EFLAGS.DF", _IO),
    _row("outs", PRIV, BOTH, "writes [esi] to port dx, repeated ecx times with rep",
         "emulated element by element after #GP, honouring rep and EFLAGS.DF", _IO),
    # ---- model-specific registers and the MSW
    _row("wrmsr", PRIV, BOTH, "writes the MSR numbered ecx from edx:eax",
         "emulated after #GP: Xen ignores or filters the write", _RING0),
    _row("rdmsr", PRIV, BOTH, "reads the MSR numbered ecx into edx:eax",
         "emulated after #GP: Xen returns a filtered virtual value", _RING0),
    _row("clts", PRIV, BOTH, "clears CR0.TS (FPU state is current again)",
         "fpu_taskswitch(0): clears the virtual CR0.TS", _RING0),
    _row("lmsw", PRIV, BOTH, "writes CR0's low four bits (PE, MP, EM, TS)",
         "emulated against the virtual CR0; a TS change becomes fpu_taskswitch", _RING0),
    # ---- sensitive: EFLAGS
    _row("pushf", SENS, BOTH, "pushes EFLAGS",
         "must push the virtual IF (!vcpu_info.evtchn_upcall_mask): the real IF is "
         "always 1 in a PV guest", _RI_REG + " (pushf shows the real IF)"),
    _row("popf", SENS, BOTH, "pops EFLAGS, including IF and IOPL at ring 0",
         "must set vcpu_info.evtchn_upcall_mask from the popped IF, which the CPU "
         "silently ignores at CPL > IOPL", _RI_REG + " (popf silently keeps IF and IOPL)"),
    _row("iret", SENS, BOTH, "returns from an interrupt: pops EIP, CS, EFLAGS [ESP, SS]",
         "becomes HYPERVISOR_iret through the hypercall page, which restores the virtual "
         "IF and returns across rings",
         "pops EFLAGS like popf: IF is silently kept at CPL > IOPL; a return to a ring-0 "
         "CS #GPs (SDM IRET pseudo-code)"),
    _row("retfq", SENS, ONLY64, "far return: pops RIP and CS (64-bit operands)",
         "a return to the kernel's own code selector goes to Xen's flat kernel CS, as "
         "iret's frame does",
         _RI_PROT + "; a return to an RPL-0 CS #GPs at CPL 3 (SDM RET: return to an "
         "inner privilege level)", faults=True),
    # ---- sensitive: system registers readable from any ring
    _row("sgdt", SENS, BOTH, "stores GDTR (base and limit)",
         "must report the GDT the guest registered, not Xen's", _RI_REG),
    _row("sidt", SENS, BOTH, "stores IDTR (base and limit)",
         "must report the guest's own IDT, not Xen's", _RI_REG),
    _row("sldt", SENS, BOTH, "stores the LDTR selector",
         "must report the LDT selector the guest set", _RI_REG),
    _row("str", SENS, BOTH, "stores the task-register selector",
         "must report the guest's virtual task register (0: PV guests have no TSS)",
         _RI_PROT),
    _row("smsw", SENS, BOTH, "stores CR0's low 16 bits",
         "must report the virtual CR0's low bits, not the real MSW", _RI_REG),
    # ---- sensitive: descriptor checks made against the real CPL
    _row("lar", SENS, BOTH, "loads a descriptor's access rights if visible from CPL",
         "answers for ring 1, and Xen raised the guest's DPL-0 descriptors to DPL 1",
         _RI_PROT),
    _row("lsl", SENS, BOTH, "loads a segment limit if the descriptor is visible from CPL",
         "answers for ring 1, and Xen raised the guest's DPL-0 descriptors to DPL 1",
         _RI_PROT),
    _row("verr", SENS, BOTH, "sets ZF if the segment is readable from CPL",
         "answers for ring 1, not ring 0", _RI_PROT),
    _row("verw", SENS, BOTH, "sets ZF if the segment is writable from CPL",
         "answers for ring 1, not ring 0", _RI_PROT),
    # ---- sensitive: segment registers that carry the ring
    _row("mov_from_sreg", SENS, BOTH, "copies CS or SS to a register or memory",
         "reads RPL 1 instead of 0: code that derives the ring from CS or SS must compare "
         "against the guest kernel's ring", _RI_PROT + " (CS/SS low bits are the CPL)"),
    _row("mov_to_ss", SENS, BOTH, "loads SS (and holds off interrupts for one instruction)",
         "must load a ring-1 stack selector (FLAT_RING1_SS or a guest descriptor Xen "
         "raised to DPL 1)",
         _RI_PROT + "; the kernel's RPL-0 selector #GPs because RPL != CPL", faults=True),
    _row("push_sreg", SENS, ONLY32, "pushes CS or SS",
         "pushes RPL 1: a frame built by hand for iret must carry the guest kernel's ring",
         _RI_PROT + " (CS/SS low bits are the CPL)"),
    _row("pop_ss", SENS, ONLY32, "pops SS",
         "must pop a ring-1 stack selector, as mov_to_ss",
         _RI_PROT + "; the kernel's RPL-0 selector #GPs because RPL != CPL", faults=True),
    # ---- fast system calls (for completeness)
    _row("sysexit", PRIV, BOTH, "returns to ring 3 from sysenter (CS/SS from the MSR)",
         "returns to user through HYPERVISOR_iret", _RING0),
    _row("sysret", PRIV, BOTH, "returns to ring 3 from syscall (AMD also in legacy mode)",
         "64-bit PV returns to user with HYPERVISOR_iret and VGCF_in_syscall", _RING0),
    _row("swapgs", PRIV, ONLY64, "exchanges GS.base with the KernelGSbase MSR",
         "the hypervisor switches the GS base on guest kernel/user transitions",
         _RING0 + "; #UD outside 64-bit mode"),
    # ---- 64-bit segment bases: not privileged, but the PV kernel's CR4 is virtual
    _row("rdfsbase", SENS, ONLY64, "reads the FS base into a register",
         "reads the FS base the kernel last set (set_segment_base(SEGBASE_FS) is the only "
         "way to change it)", _FSGSBASE),
    _row("rdgsbase", SENS, ONLY64, "reads the active GS base into a register",
         "reads the kernel's GS base, the one set_segment_base(SEGBASE_GS_KERNEL) set",
         _FSGSBASE),
    _row("wrfsbase", SENS, ONLY64, "writes the FS base from a register",
         "set_segment_base(SEGBASE_FS, value)", _FSGSBASE),
    _row("wrgsbase", SENS, ONLY64, "writes the active GS base from a register",
         "set_segment_base(SEGBASE_GS_KERNEL, value): the kernel-mode GS base", _FSGSBASE),
    # ---- extended state and PCIDs
    _row("xsetbv", PRIV, BOTH, "writes the extended control register XCR[ecx] from edx:eax",
         "emulated after #GP: Xen checks the value against the features it offers",
         _RING0 + "; " + _XEN64),
    _row("invpcid", PRIV, BOTH, "invalidates TLB entries by process-context id",
         "not emulated by Xen for a PV guest (#GP is injected): flushes go through "
         "mmuext_op (MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_INVLPG_LOCAL)", _RING0),
)  # fmt: skip

BY_NAME: dict[str, InsnClass] = {row.name: row for row in CATALOGUE}


def by_name(name: str) -> InsnClass:
    """The class called `name`; KeyError names the unknown class."""
    return BY_NAME[name]


def _ids(name: str, *ids: int) -> dict[int, InsnClass]:
    return dict.fromkeys(ids, BY_NAME[name])


# Classes decided by the instruction id alone.
_BY_ID: dict[int, InsnClass] = {
    **_ids("cli", X.X86_INS_CLI), **_ids("sti", X.X86_INS_STI), **_ids("hlt", X.X86_INS_HLT),
    **_ids("lgdt", X.X86_INS_LGDT), **_ids("lidt", X.X86_INS_LIDT),
    **_ids("lldt", X.X86_INS_LLDT), **_ids("ltr", X.X86_INS_LTR),
    **_ids("invlpg", X.X86_INS_INVLPG), **_ids("wbinvd", X.X86_INS_WBINVD),
    **_ids("invd", X.X86_INS_INVD), **_ids("in", X.X86_INS_IN), **_ids("out", X.X86_INS_OUT),
    **_ids("ins", X.X86_INS_INSB, X.X86_INS_INSW, X.X86_INS_INSD),
    **_ids("outs", X.X86_INS_OUTSB, X.X86_INS_OUTSW, X.X86_INS_OUTSD),
    **_ids("wrmsr", X.X86_INS_WRMSR), **_ids("rdmsr", X.X86_INS_RDMSR),
    **_ids("clts", X.X86_INS_CLTS), **_ids("lmsw", X.X86_INS_LMSW),
    **_ids("pushf", X.X86_INS_PUSHF, X.X86_INS_PUSHFD, X.X86_INS_PUSHFQ),
    **_ids("popf", X.X86_INS_POPF, X.X86_INS_POPFD, X.X86_INS_POPFQ),
    **_ids("iret", X.X86_INS_IRET, X.X86_INS_IRETD, X.X86_INS_IRETQ),
    **_ids("retfq", X.X86_INS_RETFQ),
    **_ids("sgdt", X.X86_INS_SGDT), **_ids("sidt", X.X86_INS_SIDT),
    **_ids("sldt", X.X86_INS_SLDT), **_ids("str", X.X86_INS_STR),
    **_ids("smsw", X.X86_INS_SMSW), **_ids("lar", X.X86_INS_LAR),
    **_ids("lsl", X.X86_INS_LSL), **_ids("verr", X.X86_INS_VERR),
    **_ids("verw", X.X86_INS_VERW),
    **_ids("sysexit", X.X86_INS_SYSEXIT, X.X86_INS_SYSEXITQ),
    **_ids("sysret", X.X86_INS_SYSRET, X.X86_INS_SYSRETQ),
    **_ids("swapgs", X.X86_INS_SWAPGS),
    **_ids("rdfsbase", X.X86_INS_RDFSBASE), **_ids("rdgsbase", X.X86_INS_RDGSBASE),
    **_ids("wrfsbase", X.X86_INS_WRFSBASE), **_ids("wrgsbase", X.X86_INS_WRGSBASE),
    **_ids("xsetbv", X.X86_INS_XSETBV), **_ids("invpcid", X.X86_INS_INVPCID),
}  # fmt: skip

_CR_CLASSES = {
    (n, write): BY_NAME[f"mov_{'to' if write else 'from'}_cr{n}"]
    for n in (0, 2, 3, 4, 8)
    for write in (True, False)
}
_RING_SEGMENTS = frozenset((X.X86_REG_CS, X.X86_REG_SS))
_SEGMENT_OPS = frozenset((X.X86_INS_MOV, X.X86_INS_PUSH, X.X86_INS_POP))


# What classify() can say yes to, as capstone's lite mode prints it: the mnemonics of
# the classes decided by id, and mov/push/pop only with a control, debug, CS or SS
# register, whose name then shows in the operand text.
_MNEMONICS_BY_ID = frozenset(lite_decoder(32).insn_name(i) for i in _BY_ID)
_SEGMENT_OP_MNEMONICS = frozenset(lite_decoder(32).insn_name(i) for i in _SEGMENT_OPS)


def may_classify(mnemonic: str, op_str: str) -> bool:
    """A cheap pre-filter on an instruction decoded without detail: False means
    classify() of it is None, so only the rest are decoded again with detail.
    capstone prints prefixes into the mnemonic ("rep insb", "notrack jmp")."""
    if mnemonic in _MNEMONICS_BY_ID:
        return True
    if mnemonic in _SEGMENT_OP_MNEMONICS:
        return "cr" in op_str or "dr" in op_str or "cs" in op_str or "ss" in op_str
    return " " in mnemonic and may_classify(mnemonic.rpartition(" ")[2], op_str)


def classify(insn) -> InsnClass | None:
    """The catalogue class of a capstone instruction decoded with detail, or None.

    cr1, cr5-cr7 and cr9-cr15 do not exist (#UD), so `mov` with them is None.
    """
    found = _BY_ID.get(insn.id)
    if found is not None:
        return found
    if insn.id == X.X86_INS_MOV:
        move = special_register_move(insn)
        if move is not None:
            if move.bank == "dr":
                return BY_NAME["mov_to_dr" if move.write else "mov_from_dr"]
            return _CR_CLASSES.get((move.number, move.write))
    if insn.id in _SEGMENT_OPS:
        return _classify_segment(insn)
    return None


def _classify_segment(insn) -> InsnClass | None:
    """mov/push/pop with CS or SS: the selectors whose low bits are the ring."""
    ops = insn.operands
    if insn.id == X.X86_INS_MOV:
        if ops[0].type == X.X86_OP_REG and ops[0].reg == X.X86_REG_SS:
            return BY_NAME["mov_to_ss"]
        if ops[1].type == X.X86_OP_REG and ops[1].reg in _RING_SEGMENTS:
            return BY_NAME["mov_from_sreg"]
        return None
    if not ops or ops[0].type != X.X86_OP_REG:
        return None
    if insn.id == X.X86_INS_PUSH and ops[0].reg in _RING_SEGMENTS:
        return BY_NAME["push_sreg"]
    if insn.id == X.X86_INS_POP and ops[0].reg == X.X86_REG_SS:
        return BY_NAME["pop_ss"]
    return None
