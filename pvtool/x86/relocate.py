"""Moving instructions to a new address: the instructions a detour displaces.

Most instructions mean the same at any address. Two kinds do not: relative branches
(jmp, jcc, call, loop, jecxz/jrcxz: a displacement from the next instruction) and, in
64-bit mode, RIP-relative memory operands (`mov rax, [rip + x]`, `call [rip + x]`,
`cmp dword ptr [rip + x], 5`). iced-x86's BlockEncoder re-encodes those for the new
address: every branch target and RIP-relative address stays where it was, a branch the
new distance no longer fits in rel8 gets its longer form (a jcc becomes rel32; loop
and jecxz, which have only rel8, branch over a near jmp to their target), and a branch
to an instruction of the block follows that instruction. The other instructions it
copies byte for byte (`_verbatim`).

Nothing is emitted unchecked: capstone decodes the moved code and `check_moved`
compares it with the original, instruction by instruction. An instruction that means
the same everywhere must come back byte for byte; a position-dependent one must come
back as the same instruction (id, prefixes, operands) naming the same absolute
addresses.
"""

from dataclasses import dataclass

import iced_x86
from capstone import CS_GRP_BRANCH_RELATIVE
from capstone import x86_const as X

from pvtool.errors import PatchError
from pvtool.x86.isa import Undecodable, decode_all

# The branches with no rel32 form (Intel SDM Vol. 2, LOOP/LOOPcc and JCXZ/JECXZ/JRCXZ).
REL8_ONLY = frozenset((X.X86_INS_LOOP, X.X86_INS_LOOPE, X.X86_INS_LOOPNE, X.X86_INS_JCXZ,
                       X.X86_INS_JECXZ, X.X86_INS_JRCXZ))  # fmt: skip
_NEAR_BRANCHES = frozenset((iced_x86.OpKind.NEAR_BRANCH16, iced_x86.OpKind.NEAR_BRANCH32,
                            iced_x86.OpKind.NEAR_BRANCH64))


class RelocationError(PatchError):
    """Instructions that cannot be moved, or whose moved encoding means something else."""


def relocate(code: bytes, old: int, new: int, mode: int) -> bytes:
    """The instructions of `code` (at `old`) re-encoded to run at `new`, checked."""
    code = bytes(code)
    block = iced_x86.BlockEncoder(mode)
    for insn in iced_x86.Decoder(mode, code, ip=old):
        if insn.code == iced_x86.Code.INVALID:
            raise RelocationError(f"iced-x86 cannot decode {code.hex()} at {insn.ip:#x}")
        block.add(insn if _iced_position_dependent(insn) else _verbatim(insn, code, old))
    try:
        moved = block.encode(new)
    except ValueError as error:
        raise RelocationError(f"cannot move {code.hex()} from {old:#x} to {new:#x}: "
                              f"{error}") from None
    check_moved(code, old, moved, new, mode)
    return moved


def _iced_position_dependent(insn) -> bool:
    kinds = (insn.op_kind(n) for n in range(insn.op_count))
    return insn.is_ip_rel_memory_operand or any(kind in _NEAR_BRANCHES for kind in kinds)


def _verbatim(insn, code: bytes, old: int):
    """INSN as its own bytes: an instruction that means the same anywhere is not
    re-encoded, which could only lose what its bytes chose (iced shortens GCC's padding
    `lea esi, [esi+eiz*1+0]`). It keeps its address, so branches to it still follow."""
    start = insn.ip - old
    data = iced_x86.Instruction.create_declare_byte(code[start:start + insn.len])
    data.ip = insn.ip
    return data


# ---- the check


@dataclass(frozen=True)
class _Moved:
    """One original instruction and what it became: `insn`, or the hop of a rel8-only
    branch (`insn` aimed at `far`, a near jmp to the real target, skipped by `over`)."""

    insn: object
    over: object = None
    far: object = None


def check_moved(code: bytes, old: int, moved: bytes, new: int, mode: int) -> None:
    """RelocationError unless MOVED (at NEW) does what CODE (at OLD) did."""
    before = _decoded(code, old, mode)
    after = _pair(before, _decoded(moved, new, mode))
    place = {b.address: a.insn.address for b, a in zip(before, after, strict=True)}
    for original, result in zip(before, after, strict=True):
        reason = _mismatch(original, result, place, mode)
        if reason:
            shown = "; ".join(_text(i) for i in (result.insn, result.over, result.far) if i)
            raise RelocationError(f"{_text(original)} at {original.address:#x} moved to "
                                  f"{result.insn.address:#x} became {shown!r}: {reason}")


def _decoded(code: bytes, address: int, mode: int) -> list:
    insns = list(decode_all(code, address, mode))
    bad = next((i for i in insns if isinstance(i, Undecodable)), None)
    if bad is not None:
        raise RelocationError(f"undecodable bytes {bad.data.hex()} at {bad.address:#x}")
    return insns


def _pair(before: list, after: list) -> list[_Moved]:
    """Each original instruction's result, in order; they must cover the moved code."""
    paired, index = [], 0
    for original in before:
        if index >= len(after):
            raise RelocationError(f"{_text(original)} at {original.address:#x} is missing "
                                  "from the moved code")
        hop = after[index:index + 3]
        if original.id in REL8_ONLY and len(hop) == 3 and _is_hop(*hop):
            paired.append(_Moved(*hop))
            index += 3
        else:
            paired.append(_Moved(after[index]))
            index += 1
    if index != len(after):
        extra = "; ".join(_text(i) for i in after[index:])
        raise RelocationError(f"the moved code has instructions no original became: {extra}")
    return paired


def _is_hop(short, over, far) -> bool:
    """`loop far; jmp over far; far: jmp target`: the shape BlockEncoder gives a rel8-only
    branch whose target is out of reach."""
    jumps = over.id == X.X86_INS_JMP and far.id == X.X86_INS_JMP
    return (jumps and _targets(short) == [far.address]
            and _targets(over) == [far.address + far.size] and len(_targets(far)) == 1)


def _mismatch(original, result: _Moved, place: dict[int, int], mode: int) -> str | None:
    insn = result.insn
    if not _position_dependent(original):
        same = result.over is None and insn.bytes == original.bytes
        return None if same else "an instruction that means the same anywhere changed bytes"
    wanted = _meaning(original, mode, place)
    if result.over is not None:  # the hop: the real target sits in the far jmp
        got = _meaning(insn, mode, {insn.operands[0].imm: _targets(result.far)[0]})
    else:
        got = _meaning(insn, mode, {})
    if got == wanted:
        return None
    if _rip_relative(original) and not _rip_relative(insn):
        return "what it addresses is beyond RIP-relative reach (2 GiB) of its new address"
    return "it no longer reaches the same addresses"


def _position_dependent(insn) -> bool:
    return insn.group(CS_GRP_BRANCH_RELATIVE) or _rip_relative(insn)


def _rip_relative(insn) -> bool:
    return any(op.type == X.X86_OP_MEM and op.mem.base == X.X86_REG_RIP for op in insn.operands)


def _targets(insn) -> list[int]:
    return [op.imm for op in insn.operands if op.type == X.X86_OP_IMM]


def _meaning(insn, mode: int, place: dict[int, int]) -> tuple:
    """What an instruction does, with every address it names made absolute (a branch
    target into the moved block mapped through `place`)."""
    mask = (1 << mode) - 1
    operands = []
    for op in insn.operands:
        if op.type == X.X86_OP_IMM and insn.group(CS_GRP_BRANCH_RELATIVE):
            operands.append(("target", place.get(op.imm, op.imm) & mask))
        elif op.type == X.X86_OP_MEM:
            mem = op.mem
            base, disp = mem.base, mem.disp
            if base == X.X86_REG_RIP:
                base, disp = None, (insn.address + insn.size + disp) & mask
            operands.append(("mem", op.size, mem.segment, base, mem.index, mem.scale, disp))
        else:
            operands.append((op.type, op.reg, op.imm if op.type == X.X86_OP_IMM else None))
    return (insn.id, tuple(insn.prefix), insn.rex, tuple(operands))


def _text(insn) -> str:
    return f"{insn.mnemonic} {insn.op_str}".strip()
