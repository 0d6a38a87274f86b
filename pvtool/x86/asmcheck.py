"""Source statements compared with what capstone decodes from keystone's bytes.

keystone 0.9.2 encodes some instructions wrongly without an error (shared/UNICORN.md):
a spurious 0x66 on 32-bit lgdt/lidt/sgdt/sidt, 16-bit iret/pushf/popf, a 2-byte
`push cs`, a truncated `ljmp sel:off`, RIP-relative absolute operands in 64-bit mode.
That last one is right only at the address the code was assembled for, which for the
patcher is where it runs (the glue, a stub, an in-place replacement are each
assembled at their final address): so a RIP-relative operand passes exactly when the
address it reaches from there is the source's absolute address.
So every encoding is decoded again and compared statement by statement: same count,
same mnemonic (up to spelling aliases), equivalent operands (case, spacing, numeric
literals, "ptr", operand order of commutative instructions; branch targets as absolute
addresses), and no operand- or address-size prefix the source did not ask for.

`parse` splits a source text into Statements; `compare` returns None when a statement
and a decoded instruction agree, else the reason they do not.
"""

import re
from collections import Counter
from dataclasses import dataclass, field

from capstone import x86_const as X

PREFIXES = {"rep": "rep", "repe": "repe", "repz": "repe", "repne": "repne",
            "repnz": "repne", "lock": "lock"}  # fmt: skip
_JCC = {
    "z": "e", "nz": "ne", "c": "b", "nae": "b", "nc": "ae", "nb": "ae", "na": "be",
    "nbe": "a", "pe": "p", "po": "np", "nge": "l", "nl": "ge", "ng": "le", "nle": "g",
}  # fmt: skip
# Source spelling -> capstone spelling.
ALIASES = {
    **{f"j{a}": f"j{b}" for a, b in _JCC.items()},
    **{f"set{a}": f"set{b}" for a, b in _JCC.items()},
    **{f"cmov{a}": f"cmov{b}" for a, b in _JCC.items()},
    "sal": "shl", "pushad": "pushal", "popad": "popal", "retn": "ret", "xlat": "xlatb",
    "lret": "retf", "lretq": "retfq", "int1": "int1",
}  # fmt: skip
# Spellings whose operand size keystone gets wrong or that are ambiguous: the hint says
# which spelling to use instead.
AMBIGUOUS = {
    (32, "iret"): "iretd", (64, "iret"): "iretq", (32, "pushf"): "pushfd",
    (64, "pushf"): "pushfq", (32, "popf"): "popfd", (64, "popf"): "popfq",
    (64, "sysexit"): "sysexitq", (64, "sysret"): "sysretq",
}  # fmt: skip
_STRING_OPS = re.compile(r"^(ins|outs|movs|stos|lods|cmps|scas)[bwdq]$|^xlatb$")
_SIXTEEN_BIT_MNEMONICS = re.compile(
    r"^(pushw|popw|iretw|pushfw|popfw|pushaw|popaw|cbw|cwd|(ins|outs|movs|stos|lods|cmps|scas)w)$"
)
_COMMUTATIVE = frozenset(("xchg", "test"))
_SIZES = {"byte": 1, "word": 2, "dword": 4, "fword": 6, "qword": 8, "tbyte": 10,
          "xmmword": 16, "ymmword": 32, "zmmword": 64}  # fmt: skip
_LABEL = re.compile(r"^([A-Za-z_.$@][\w.$@]*)\s*:(?![\[:])\s*")
_NUMBER = re.compile(r"^(0x[0-9a-f]+|[0-9][0-9a-f]*h|0b[01]+|[0-9]+)$")
_REG16 = frozenset(("ax", "bx", "cx", "dx", "si", "di", "sp", "bp")) | {
    f"r{n}w" for n in range(8, 16)
}
_REG32 = frozenset(("eax", "ebx", "ecx", "edx", "esi", "edi", "esp", "ebp", "eip")) | {
    f"r{n}d" for n in range(8, 16)
}
_STACK_BASES = frozenset(("esp", "ebp", "rsp", "rbp", "sp", "bp"))


@dataclass
class Statement:
    """One source statement: `[label:]... [prefix...] mnemonic [operand, ...]`."""

    text: str  # the statement as written, without its labels
    labels: list[str] = field(default_factory=list)  # labels defined just before it
    prefixes: tuple[str, ...] = ()
    mnemonic: str = ""  # lowercase, as written
    operands: list[str] = field(default_factory=list)

    @property
    def canonical(self) -> str:
        """Lowercase, no blanks inside operands: the key of SYSTEM_ENCODINGS."""
        ops = ", ".join(re.sub(r"\s+", "", op) for op in self.operands)
        return " ".join((*self.prefixes, self.mnemonic, ops)).strip()


def parse(text: str) -> tuple[list[Statement], list[str]]:
    """Statements (separated by newlines or ';') and the labels left after the last."""
    statements, pending = [], []
    for piece in re.split(r"[\n;]", text):
        rest = piece.strip()
        while match := _LABEL.match(rest):
            pending.append(match.group(1))
            rest = rest[match.end() :]
        if rest:
            statements.append(_statement(rest, pending))
            pending = []
    return statements, pending


def _statement(text: str, labels: list[str]) -> Statement:
    words = text.lower().split(None, 1)
    prefixes = []
    while words and words[0] in PREFIXES and len(words) > 1:
        prefixes.append(PREFIXES[words[0]])
        words = words[1].split(None, 1)
    operands = split_operands(words[1]) if len(words) > 1 else []
    return Statement(text, labels, tuple(prefixes), words[0], operands)


def split_operands(text: str) -> list[str]:
    """Operands separated by commas outside brackets."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += (char == "[") - (char == "]")
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [part for part in parts if part]


# ---- source operands -> comparable values


class Unresolved(ValueError):
    """An operand that names something neither a register, a number nor a label."""


def _number(token: str) -> int | None:
    if not _NUMBER.match(token):
        return None
    if token.startswith("0x"):
        return int(token, 16)
    if token.endswith("h"):
        return int(token[:-1], 16)
    if token.startswith("0b"):
        return int(token[2:], 2)
    return int(token, 10)


def evaluate(expr: str, registers: frozenset[str], labels: dict[str, int]):
    """(Counter of register -> multiplier, constant) of a `+ - *` expression."""
    regs: Counter = Counter()
    const = 0
    for sign, term in re.findall(r"([+-]?)\s*([^+-]+)", expr.replace(" ", "")):
        factor, reg = -1 if sign == "-" else 1, None
        for token in term.split("*"):
            value = _number(token)
            if value is None and token in labels:
                value = labels[token]
            if value is not None:
                factor *= value
            elif token in registers and reg is None:
                reg = token
            else:
                raise Unresolved(token)
        if reg is None:
            const += factor
        else:
            regs[reg] += factor
    return regs, const


def source_operand(text: str, registers: frozenset[str], labels: dict[str, int]):
    """A comparable tuple: ("reg", name) / ("imm", value) / ("mem", size, seg, regs, disp)
    / ("far", selector, offset)."""
    text = re.sub(r"\s+", " ", text.strip().lower()).removeprefix("offset ")
    if "[" in text:
        return _source_memory(text, registers, labels)
    if text in registers:
        return ("reg", text)
    if ":" in text:
        selector, offset = text.split(":", 1)
        return ("far", evaluate(selector, registers, labels)[1],
                evaluate(offset, registers, labels)[1])  # fmt: skip
    regs, const = evaluate(text, registers, labels)
    if regs:
        raise Unresolved(text)
    return ("imm", const)


def _source_memory(text: str, registers, labels):
    head, _, rest = text.partition("[")
    inside, _, tail = rest.partition("]")
    size = None
    segment = None
    for word in head.replace(":", " : ").split():
        if word in _SIZES:
            size = _SIZES[word]
        elif word in registers:
            segment = word
    if ":" in inside:  # [fs:eax]
        segment, inside = inside.split(":", 1)
    regs, disp = evaluate(inside + tail.replace("[", "+").replace("]", ""), registers, labels)
    return ("mem", size, segment, regs, disp)


# ---- decoded operands


def decoded_operand(insn, op):
    if op.type == X.X86_OP_REG:
        return ("reg", insn.reg_name(op.reg))
    if op.type == X.X86_OP_IMM:
        return ("imm", op.imm, op.size)
    mem = op.mem
    regs: Counter = Counter()
    if mem.base:
        regs[insn.reg_name(mem.base)] += 1
    if mem.index:
        regs[insn.reg_name(mem.index)] += mem.scale
    segment = insn.reg_name(mem.segment) if mem.segment else None
    reached = None
    if mem.base == X.X86_REG_RIP:  # the address it names from where it was assembled
        reached = (insn.address + insn.size + mem.disp) & _ADDRESS_MASK
    return ("mem", op.size, segment, regs, mem.disp, reached)


_ADDRESS_MASK = (1 << 64) - 1


# ---- comparison


def compare(stmt: Statement, insn, registers, labels, mode: int) -> str | None:
    """None when `insn` is a faithful encoding of `stmt`, else the reason it is not."""
    hint = AMBIGUOUS.get((mode, stmt.mnemonic))
    if hint and not stmt.prefixes:
        return f"'{stmt.mnemonic}' is ambiguous or mis-encoded by keystone: write '{hint}'"
    reason = _compare_mnemonic(stmt, insn)
    if reason is None:
        try:
            reason = _compare_operands(stmt, insn, registers, labels, mode)
        except Unresolved as error:
            reason = f"cannot resolve {str(error)!r}"
    return reason or _unasked_prefix(stmt, insn, mode)


def _compare_mnemonic(stmt: Statement, insn) -> str | None:
    wanted = " ".join((*stmt.prefixes, ALIASES.get(stmt.mnemonic, stmt.mnemonic)))
    got = insn.mnemonic
    if wanted == got or (wanted == "mov" and got == "movabs"):
        return None
    far_indirect = stmt.mnemonic in ("ljmp", "lcall") and insn.op_str.startswith("ptr ")
    if far_indirect and got == stmt.mnemonic[1:]:
        return None
    return f"mnemonic {got!r} is not {wanted!r}"


def _compare_operands(stmt, insn, registers, labels, mode) -> str | None:
    ops = insn.operands
    if not stmt.operands and _STRING_OPS.match(stmt.mnemonic):
        return None  # capstone spells out the implicit operands of string instructions
    wanted = []
    for text in stmt.operands:
        value = source_operand(text, registers, labels)
        wanted.extend([("imm", value[1]), ("imm", value[2])] if value[0] == "far" else [value])
    got = [decoded_operand(insn, op) for op in ops]
    if len(wanted) != len(got):
        return f"{len(got)} operands, not {len(wanted)}"
    reason = _pairwise(wanted, got, mode)
    if reason and stmt.mnemonic in _COMMUTATIVE and len(got) == 2:
        return _pairwise(wanted, got[::-1], mode) and reason
    return reason


def _pairwise(wanted, got, mode) -> str | None:
    for position, (want, have) in enumerate(zip(wanted, got, strict=True)):
        reason = _operand_mismatch(want, have, mode)
        if reason:
            return f"operand {position + 1}: {reason}"
    return None


def _operand_mismatch(want, have, mode) -> str | None:
    if want[0] != have[0]:
        return f"{have[0]} where the source has {want[0]}"
    if want[0] == "reg":
        return None if want[1] == have[1] else f"{have[1]} is not {want[1]}"
    if want[0] == "imm":
        bits = 8 * have[2] if have[2] else mode
        same = (want[1] - have[1]) % (1 << bits) == 0 or (want[1] - have[1]) % (1 << mode) == 0
        return None if same else f"{have[1]:#x} is not {want[1]:#x}"
    return _memory_mismatch(want, have, mode)


def _memory_mismatch(want, have, mode) -> str | None:
    _, size, segment, regs, disp = want
    _, have_size, have_segment, have_regs, have_disp, reached = have
    if size is not None and size != have_size:
        return f"{have_size}-byte access, not {size}"
    if "rip" in have_regs and "rip" not in regs:
        if +regs or (disp - reached) & _ADDRESS_MASK:
            return (f"an absolute address became RIP-relative, reaching {reached:#x} "
                    f"instead of {disp & _ADDRESS_MASK:#x}")
        return _segment_mismatch(segment, have_segment, regs)
    if +regs != +have_regs:
        return f"address registers {dict(have_regs)} are not {dict(regs)}"
    if (disp - have_disp) % (1 << mode):
        return f"displacement {have_disp:#x} is not {disp:#x}"
    return _segment_mismatch(segment, have_segment, regs)


def _segment_mismatch(segment, have_segment, regs) -> str | None:
    if segment == have_segment:
        return None
    default = "ss" if set(regs) & _STACK_BASES else "ds"
    if have_segment is None and segment == default:
        return None
    return f"segment {have_segment or 'default'} is not {segment or 'default'}"


def _unasked_prefix(stmt: Statement, insn, mode: int) -> str | None:
    if insn.prefix[2] == 0x66 and not _asks_16bit_operand(stmt):
        return "carries an operand-size prefix 0x66 the source did not ask for"
    if insn.prefix[3] == 0x67 and not _asks_address_size(stmt, mode):
        return "carries an address-size prefix 0x67 the source did not ask for"
    return None


def _asks_16bit_operand(stmt: Statement) -> bool:
    text = " ".join(stmt.operands)
    words = set(re.findall(r"[a-z0-9]+", text))
    return bool(
        words & _REG16
        or "word" in words
        or "xmm" in text
        or _SIXTEEN_BIT_MNEMONICS.match(stmt.mnemonic)
    )


def _asks_address_size(stmt: Statement, mode: int) -> bool:
    if stmt.mnemonic == ("jcxz" if mode == 32 else "jecxz"):
        return True
    inside = " ".join(re.findall(r"\[([^\]]*)\]", " ".join(stmt.operands)))
    words = set(re.findall(r"[a-z0-9]+", inside))
    return bool(words & (_REG16 if mode == 32 else _REG32))
