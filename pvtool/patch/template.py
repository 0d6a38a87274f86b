"""A rule's template, read once when its patch set loads: Intel-syntax statements
with {names}, each knowing the names it uses and the stack depth it runs at.

The depth is how many bytes the template's own statements before it have pushed, so
that sites.py can rebase an operand the site addresses from esp. It is derived from
the statements: push, pop, pushfd, popfd, pushad and popad move the stack by their
operand size (SDM Vol. 2); call leaves it as it was (a glue function returns what it
was given) and so does jmp (control leaves the template). Anything else that moves
esp, and a push or pop of a {name}, whose size would depend on the site, is refused
when the patch set loads.
"""

import string
from dataclasses import dataclass

from capstone import x86_const as X

from pvtool.errors import PatchError
from pvtool.x86.isa import Undecodable, assemble_checked, decode_all

OPERAND_SIZE_PREFIX = 0x66

# The names a template may use for the site's own operands (sites.py renders them, and
# a site without the operand a name asks for cannot take the template). Every other
# name is an address the patcher fills in. Each maps to the text that stands in for
# it when a statement is assembled at load time, to learn how it moves the stack.
OPERAND_SAMPLES = {
    "gpr": "ecx",  # the general register of a mov to or from a control register
    "dst": "ecx",  # the register or memory destination of a mov from CS or SS
    "dst32": "ecx",  # a 32-bit register destination (the register forms of str...)
    "dst16": "cx",  # a register destination of a mov from CS or SS, as 16 bits
    "sreg_record": "0",  # where the glue records the kernel's CS or SS (the site's)
    "src16": "cx",  # the 16-bit register or memory source of a mov to SS
    "sreg": "ds",  # the segment register of a segment move
    "reg": "ecx",  # the lone register operand (rdfsbase, wrgsbase...) as written
}
# A 64-bit kernel's stand-ins where they differ: its general registers are 64 bits.
OPERAND_SAMPLES_64 = OPERAND_SAMPLES | {"gpr": "rcx", "dst": "rcx", "reg": "rcx"}
ADDRESS_SAMPLE = "0"

# How far each stack instruction moves ESP, in units of its operand size (2 bytes
# with the operand-size prefix, else 4 in 32-bit code and 8 in 64-bit code): SDM
# Vol. 2, PUSH, POP, PUSHF/PUSHFD/PUSHFQ, POPF/POPFD/POPFQ, PUSHA/PUSHAD, POPA/POPAD.
STACK_UNITS = {
    X.X86_INS_PUSH: 1, X.X86_INS_PUSHF: 1, X.X86_INS_PUSHFD: 1, X.X86_INS_PUSHFQ: 1,
    X.X86_INS_PUSHAW: 8, X.X86_INS_PUSHAL: 8,
    X.X86_INS_POP: -1, X.X86_INS_POPF: -1, X.X86_INS_POPFD: -1, X.X86_INS_POPFQ: -1,
    X.X86_INS_POPAW: -8, X.X86_INS_POPAL: -8,
}  # fmt: skip
STACK_NEUTRAL = frozenset({X.X86_INS_CALL, X.X86_INS_JMP})
# Instructions that move ESP although capstone does not list it among their writes.
MOVES_STACK_UNLISTED = frozenset({
    X.X86_INS_ENTER, X.X86_INS_IRET, X.X86_INS_IRETD, X.X86_INS_RETF, X.X86_INS_INT,
    X.X86_INS_INT1, X.X86_INS_INT3, X.X86_INS_INTO, X.X86_INS_SYSENTER,
    X.X86_INS_IRETQ, X.X86_INS_RETFQ, X.X86_INS_SYSCALL,
})  # fmt: skip
STACK_POINTERS = frozenset({X.X86_REG_RSP, X.X86_REG_ESP, X.X86_REG_SP})


@dataclass(frozen=True)
class Statement:
    text: str  # Intel syntax, {names} unfilled
    names: frozenset[str]
    depth: int  # bytes the template's statements before this one left on the stack


@dataclass(frozen=True)
class Template:
    text: str
    statements: tuple[Statement, ...]
    end_depth: int  # what the whole template leaves on the stack (pushf's: 4)

    @property
    def names(self) -> frozenset[str]:
        return frozenset().union(*(s.names for s in self.statements))

    @property
    def moves_stack(self) -> bool:
        """Whether any statement pushes or pops: then esp, as an operand of the site,
        would not hold the kernel's value inside the template."""
        return self.end_depth != 0 or any(s.depth for s in self.statements)


def parse_template(text: str, where: str, mode: int) -> Template:
    """TEXT's statements (for a MODE-bit kernel) with their names and depths;
    PatchError naming WHERE if a statement moves the stack in a way the depth cannot
    follow."""
    statements, depth = [], 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        names = names_in(line, where)
        statements.append(Statement(line, names, depth))
        depth += stack_effect(line, names, where, mode)
    return Template(text, tuple(statements), depth)


def names_in(statement: str, where: str) -> frozenset[str]:
    try:
        return frozenset(name for _, name, _, _ in string.Formatter().parse(statement) if name)
    except ValueError as exc:
        raise PatchError(f"{where}: `{statement}`: {exc}") from None


def stack_effect(statement: str, names: frozenset[str], where: str, mode: int) -> int:
    """How many bytes STATEMENT pushes (negative: pops), from the encoding the patcher
    will emit for it, every name replaced by a stand-in (OPERAND_SAMPLES, or an
    address)."""
    try:
        samples = OPERAND_SAMPLES_64 if mode == 64 else OPERAND_SAMPLES
        sample = statement.format_map({name: samples.get(name, ADDRESS_SAMPLE)
                                       for name in names})
    except (ValueError, LookupError, AttributeError) as exc:  # {}, {0}, {a:x}, {a.b}
        raise PatchError(f"{where}: `{statement}` names something else than a plain "
                         f"{{name}}: {exc}") from None
    try:
        insns = list(decode_all(assemble_checked(sample, 0, mode), 0, mode))
    except PatchError as exc:
        raise PatchError(f"{where}: {exc.message}") from None
    effect = 0
    for insn in insns:
        moved = None if isinstance(insn, Undecodable) else _moves(insn, mode)
        if moved is None:
            raise PatchError(f"{where}: `{statement}` moves the stack pointer; a template "
                             "may only push and pop (push, pop, pushfd, popfd, pushad, "
                             "popad)")
        if moved and names:
            raise PatchError(f"{where}: `{statement}` pushes or pops a {{name}}, whose "
                             "size would depend on the site")
        effect += moved
    return effect


def _moves(insn, mode: int) -> int | None:
    """Bytes INSN pushes (negative: pops), or None if it moves ESP otherwise."""
    units = STACK_UNITS.get(insn.id)
    if units is not None:
        if insn.id == X.X86_INS_POP and _pops_into_esp(insn):
            return None  # ESP becomes the popped value
        return units * (2 if OPERAND_SIZE_PREFIX in insn.prefix else mode // 8)
    if insn.id in STACK_NEUTRAL:
        return 0
    _, written = insn.regs_access()
    if insn.id in MOVES_STACK_UNLISTED or STACK_POINTERS & set(written):
        return None
    return 0


def _pops_into_esp(insn) -> bool:
    op = insn.operands[0]
    return op.type == X.X86_OP_REG and op.reg in STACK_POINTERS
