"""The operands of catalogue instructions, in the shape a rewrite template needs.

A stub that replaces `mov cr3, ebx` needs "cr3" and "ebx"; one that replaces
`lgdt [eax + 8]` needs the memory operand text to re-use in `lea`; one that replaces
`out dx, al` needs the port and the width. These helpers read capstone's operand detail
(register ids, not text) and hand back small frozen records. catalogue.py re-exports
them; they are kept here so the table stays readable.
"""

from dataclasses import dataclass

from capstone import x86_const as X

_CR_FIRST, _CR_LAST = X.X86_REG_CR0, X.X86_REG_CR15
_DR_FIRST, _DR_LAST = X.X86_REG_DR0, X.X86_REG_DR15
SEGMENT_REGISTERS = frozenset(
    (X.X86_REG_CS, X.X86_REG_SS, X.X86_REG_DS, X.X86_REG_ES, X.X86_REG_FS, X.X86_REG_GS)
)
_PORT_IN = frozenset((X.X86_INS_IN, X.X86_INS_INSB, X.X86_INS_INSW, X.X86_INS_INSD))
_PORT_OUT = frozenset((X.X86_INS_OUT, X.X86_INS_OUTSB, X.X86_INS_OUTSW, X.X86_INS_OUTSD))
_PORT_STRING = frozenset(
    (X.X86_INS_INSB, X.X86_INS_INSW, X.X86_INS_INSD,
     X.X86_INS_OUTSB, X.X86_INS_OUTSW, X.X86_INS_OUTSD)
)  # fmt: skip
_REP_PREFIXES = (X.X86_PREFIX_REP, X.X86_PREFIX_REPNE)


@dataclass(frozen=True, slots=True)
class SpecialRegisterMove:
    """`mov` to or from a control register (cr0..cr8) or a debug register (dr0..dr7)."""

    bank: str  # "cr" or "dr"
    number: int  # 3 for cr3
    gpr: str  # the general register as capstone names it: "eax", "rax"
    write: bool  # True for `mov crN, gpr` (the special register is written)

    @property
    def register(self) -> str:
        return f"{self.bank}{self.number}"


@dataclass(frozen=True, slots=True)
class PortAccess:
    """in, out, ins, outs (with or without rep)."""

    port: int | None  # the imm8 port, or None when the port is in dx
    width: int  # bytes per transfer: 1, 2 or 4
    output: bool  # out/outs
    string: bool  # ins/outs: memory at es:[edi] / [esi], count in ecx when rep
    rep: bool
    register: str | None  # al/ax/eax for in and out; None for the string forms


@dataclass(frozen=True, slots=True)
class MemoryOperand:
    """A memory operand: capstone's text and its parts."""

    text: str  # as capstone prints it: "dword ptr fs:[eax + 8]", "[eax + 8]"
    address: str  # only the bracketed expression, "[eax + 8]": valid after `lea reg,`
    segment: str | None  # an explicit segment override ("fs"), else None
    base: str | None
    index: str | None
    scale: int
    disp: int
    size: int  # bytes capstone says are accessed (6 for lgdt in 32-bit mode)


@dataclass(frozen=True, slots=True)
class SegmentMove:
    """mov to/from a segment register, push sreg, pop sreg."""

    sreg: str  # "cs", "ss", ...
    operand: str  # the other operand's text ("eax", "word ptr [eax]"); "" for push/pop
    write: bool  # True when the segment register is loaded (mov ss, pop ss)


@dataclass(frozen=True, slots=True)
class RegisterOperand:
    """The single register operand of lldt, ltr, lmsw, str, sldt, smsw, verr, verw."""

    name: str


OperandInfo = SpecialRegisterMove | PortAccess | MemoryOperand | SegmentMove | RegisterOperand


def operand_texts(insn) -> list[str]:
    """capstone's op_str split into one text per operand (it separates them by ', ')."""
    return insn.op_str.split(", ") if insn.op_str else []


def special_register_move(insn) -> SpecialRegisterMove | None:
    """The cr/dr number, general register and direction of `mov crN/drN`, else None."""
    if insn.id != X.X86_INS_MOV:
        return None
    ops = insn.operands
    if len(ops) != 2 or ops[0].type != X.X86_OP_REG or ops[1].type != X.X86_OP_REG:
        return None
    for special, gpr, write in ((ops[0].reg, ops[1].reg, True), (ops[1].reg, ops[0].reg, False)):
        if _CR_FIRST <= special <= _CR_LAST:
            return SpecialRegisterMove("cr", special - _CR_FIRST, insn.reg_name(gpr), write)
        if _DR_FIRST <= special <= _DR_LAST:
            return SpecialRegisterMove("dr", special - _DR_FIRST, insn.reg_name(gpr), write)
    return None


def port_access(insn) -> PortAccess | None:
    """Port, width and direction of in/out/ins/outs, else None."""
    output = insn.id in _PORT_OUT
    if not output and insn.id not in _PORT_IN:
        return None
    port, width, register = None, 0, None
    for op in insn.operands:
        if op.type == X.X86_OP_IMM:
            port = op.imm & 0xFF
        elif op.type == X.X86_OP_MEM:
            width = op.size
        elif op.reg != X.X86_REG_DX:
            register, width = insn.reg_name(op.reg), op.size
    string = insn.id in _PORT_STRING
    rep = string and insn.prefix[0] in _REP_PREFIXES
    return PortAccess(port, width, output, string, rep, register)


def memory_operand(insn) -> MemoryOperand | None:
    """The first memory operand (lgdt, lidt, sgdt, sidt, invlpg, lldt [m], ...), else None."""
    texts = operand_texts(insn)
    for position, op in enumerate(insn.operands):
        if op.type == X.X86_OP_MEM:
            text = texts[position] if len(texts) == len(insn.operands) else insn.op_str
            return _memory_record(insn, op, text)
    return None


def _memory_record(insn, op, text: str) -> MemoryOperand:
    mem = op.mem
    prefix, bracket, rest = text.partition("[")
    segment = prefix.rstrip(":").split()[-1] if prefix.endswith(":") else None
    return MemoryOperand(
        text=text,
        address=bracket + rest,
        segment=segment,
        base=insn.reg_name(mem.base) if mem.base else None,
        index=insn.reg_name(mem.index) if mem.index else None,
        scale=mem.scale,
        disp=mem.disp,
        size=op.size,
    )


def segment_move(insn) -> SegmentMove | None:
    """The segment register and the other operand of mov/push/pop with a sreg, else None."""
    if insn.id not in (X.X86_INS_MOV, X.X86_INS_PUSH, X.X86_INS_POP):
        return None
    ops = insn.operands
    texts = operand_texts(insn)
    for position, op in enumerate(ops):
        if op.type == X.X86_OP_REG and op.reg in SEGMENT_REGISTERS:
            other = texts[1 - position] if len(ops) == 2 else ""
            write = insn.id == X.X86_INS_POP or (insn.id == X.X86_INS_MOV and position == 0)
            return SegmentMove(insn.reg_name(op.reg), other, write)
    return None


def operand_info(insn) -> OperandInfo | None:
    """The operand record a rewrite of this instruction needs, or None when it has none.

    in/out/ins/outs -> PortAccess; mov crN/drN -> SpecialRegisterMove; mov/push/pop of a
    segment register -> SegmentMove; otherwise the first memory operand -> MemoryOperand;
    otherwise a lone register operand -> RegisterOperand.
    """
    found = port_access(insn) or special_register_move(insn) or segment_move(insn)
    if found is not None:
        return found
    found = memory_operand(insn)
    if found is not None:
        return found
    ops = insn.operands
    if len(ops) == 1 and ops[0].type == X.X86_OP_REG:
        return RegisterOperand(insn.reg_name(ops[0].reg))
    return None
