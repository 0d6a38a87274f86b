"""capstone and keystone for x86-32 and x86-64, created once per mode.

- Decoding: `decoder(mode)` is the one capstone engine per mode (detail on);
  `lite_decoder(mode)` the one with detail off, for the bulk of a kernel's code (a
  decode with detail costs ~6 us and its detail structure, lite about a third of that
  and only the address, size, mnemonic and operand text);
  `decode_one` caches hot single decodes (the trap-and-emulate path decodes the same
  faulting instruction over and over);
  `decode_all` and `decode_all_lite` never stop silently: capstone's disasm() ends at
  the first byte it cannot decode, so every undecodable run is yielded as an
  `Undecodable` record. They hand capstone a chunk at a time: disasm() builds all the
  instructions of its buffer before yielding the first, so a whole kernel at once
  would cost its size times capstone's ~250-byte instruction record.
- Assembling: `assemble` is keystone as is (fast, unchecked). `assemble_checked` is what
  the patcher uses: statements that keystone encodes wrongly come from the verified
  SYSTEM_ENCODINGS table, the rest from keystone, and everything is decoded again and
  compared with the source (asmcheck.py). Any doubt is an AssemblyError. Its checked
  encodings are cached by (text, address, mode): the same source at the same address
  always gives the same bytes, and a patch assembles the same glue twice (glue.py's
  passes) and a fuzzing campaign the same stubs thousands of times. A refusal is not
  cached: it is raised again, checked again, each time. `assemble_unchecked` gives the
  same bytes without the check, for sizing a layout before its checked pass.
"""

import functools
from collections.abc import Iterator
from dataclasses import dataclass, replace

import capstone
import keystone
from capstone import x86_const as X

from pvtool.errors import PatchError
from pvtool.x86 import asmcheck
from pvtool.x86.system_encodings import SYSTEM_ENCODINGS, system_encoding

__all__ = [
    "MODES", "MAX_INSN_SIZE", "AssemblyError", "Undecodable", "decoder", "lite_decoder",
    "assembler", "decode_one", "decode_one_lite", "decode_all", "decode_all_lite", "assemble",
    "assemble_checked", "assemble_unchecked", "SYSTEM_ENCODINGS", "system_encoding",
    "register_names",
]  # fmt: skip

MODES = (32, 64)
MAX_INSN_SIZE = 15  # architectural limit: longer is #GP
OPERAND_SIZE_PREFIX = 0x66  # capstone's prefix[2] (SDM Vol. 2, 2.1.1: group 3)
REX_W = 0x48  # 64-bit operand size (SDM Vol. 2, 2.2.1): iretq is 48 CF
_CHUNK = 16 * 1024  # bytes handed to one capstone disasm() call
_CS_MODES = {32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}
_KS_MODES = {32: keystone.KS_MODE_32, 64: keystone.KS_MODE_64}


class AssemblyError(PatchError):
    """A statement keystone refused, or an encoding that does not decode back to its source.

    `statement` is the failing source statement (None when it cannot be pinned down).
    """

    def __init__(self, message: str, statement: str | None = None):
        super().__init__(message)
        self.statement = statement


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A run of bytes capstone cannot decode as any instruction."""

    address: int
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def end(self) -> int:
        return self.address + len(self.data)


def _check_mode(mode: int) -> None:
    if mode not in MODES:
        raise ValueError(f"x86 mode must be 32 or 64, not {mode!r}")


@functools.cache
def decoder(mode: int) -> capstone.Cs:
    """The capstone engine for `mode`, Intel syntax, detail on. Shared: do not reconfigure."""
    _check_mode(mode)
    engine = capstone.Cs(capstone.CS_ARCH_X86, _CS_MODES[mode])
    engine.detail = True
    return engine


@functools.cache
def lite_decoder(mode: int) -> capstone.Cs:
    """The capstone engine for `mode` with detail off, for disasm_lite. Shared."""
    _check_mode(mode)
    return capstone.Cs(capstone.CS_ARCH_X86, _CS_MODES[mode])


@functools.cache
def assembler(mode: int) -> keystone.Ks:
    """The keystone engine for `mode`, Intel syntax."""
    _check_mode(mode)
    return keystone.Ks(keystone.KS_ARCH_X86, _KS_MODES[mode])


@functools.cache
def register_names(mode: int) -> frozenset[str]:
    """Every register name capstone can print."""
    engine = decoder(mode)
    return frozenset(filter(None, (engine.reg_name(r) for r in range(1, X.X86_REG_ENDING))))


# ---- decoding


@functools.lru_cache(maxsize=4096)
def _decode_cached(code: bytes, address: int, mode: int):
    return next(decoder(mode).disasm(code, address, 1), None)


def decode_one(code: bytes, address: int, mode: int):
    """The instruction at the start of `code` (a capstone CsInsn with detail), or None.

    Results are cached by (bytes, address, mode) and shared: treat them as read-only.
    """
    return _decode_cached(bytes(code[:MAX_INSN_SIZE]), address, mode)


def decode_one_lite(code: bytes, address: int, mode: int) -> tuple[int, int, str, str] | None:
    """(address, size, mnemonic, operand text) of the instruction at the start of
    `code`, decoded without detail, or None."""
    return next(lite_decoder(mode).disasm_lite(bytes(code[:MAX_INSN_SIZE]), address, 1), None)


def decode_all(code: bytes, address: int, mode: int) -> Iterator:
    """Every instruction in `code` (CsInsn with detail), in order, and an `Undecodable`
    record for each run of bytes that no instruction starts at; together they cover
    `code` exactly."""
    return _decode_runs(bytes(code), address, mode, decoder(mode).disasm,
                        lambda i: i.address + i.size)


def decode_all_lite(code: bytes, address: int, mode: int) -> Iterator:
    """decode_all without detail: (address, size, mnemonic, operand text) tuples and
    `Undecodable` records."""
    return _decode_runs(bytes(code), address, mode, lite_decoder(mode).disasm_lite,
                        lambda i: i[0] + i[1])


def _decode_runs(code: bytes, address: int, mode: int, disasm, end_of) -> Iterator:
    offset = 0
    while offset < len(code):
        start, last = offset, None
        # an instruction cut by the chunk's end is decoded again at the next chunk
        for last in disasm(code[offset : offset + _CHUNK], address + offset):
            yield last
        if last is not None:
            offset = end_of(last) - address
        else:
            offset += 1
            while offset < len(code) and _undecodable_at(code, offset, address, mode):
                offset += 1
            yield Undecodable(address + start, code[start:offset])


def _undecodable_at(code: bytes, offset: int, address: int, mode: int) -> bool:
    return decode_one_lite(code[offset : offset + MAX_INSN_SIZE], address + offset, mode) is None


# ---- assembling


def assemble(text: str, address: int, mode: int) -> bytes:
    """keystone's encoding of `text` at `address`, UNCHECKED (see UNICORN.md for what
    keystone 0.9.2 gets wrong). Statements are separated by newlines or ';'."""
    engine = assembler(mode)
    try:
        encoding, _ = engine.asm(text, address)
    except keystone.KsError as error:
        statement = _failing_statement(text, address, engine)
        raise AssemblyError(
            f"cannot assemble {statement!r}: {error}" if statement else f"{error}", statement
        ) from None
    return bytes(encoding or b"")


def _failing_statement(text: str, address: int, engine: keystone.Ks) -> str | None:
    """The first statement keystone refuses. keystone's own statement count is not
    reliable (it counts prefixes and reports 0 after a failure), so grow a prefix of the
    source until it fails; labels defined later are kept so forward jumps resolve."""
    statements, trailing = asmcheck.parse(text)
    lines = [[*(f"{label}:" for label in s.labels), s.text] for s in statements]
    for count in range(1, len(statements) + 1):
        later = [f"{label}:" for s in statements[count:] for label in s.labels] + [
            f"{label}:" for label in trailing
        ]
        source = "\n".join(line for group in lines[:count] for line in group) + "\n"
        try:
            engine.asm(source + "\n".join(later), address)
        except keystone.KsError:
            return statements[count - 1].text
    return None


ASSEMBLED_CACHE = 4096  # checked encodings kept: a kernel's stubs and glue, many times over


@functools.lru_cache(maxsize=ASSEMBLED_CACHE)
def assemble_checked(text: str, address: int, mode: int) -> bytes:
    """Assemble `text` at `address`, decode the result and compare it with the source,
    statement by statement. System instructions keystone gets wrong come from
    SYSTEM_ENCODINGS. Raises AssemblyError naming the statement and both texts.
    Cached (see the module's docstring)."""
    statements, trailing, code = _prepared(text, address, mode)
    insns = _decode_exactly(code, address, mode, statements)
    labels = _label_addresses(statements, trailing, insns, address + len(code))
    registers = register_names(mode)
    for stmt, insn in zip(statements, insns, strict=True):
        reason = asmcheck.compare(stmt, insn, registers, labels, mode)
        if reason:
            raise AssemblyError(
                f"statement {stmt.text!r} assembled as "
                f"{_insn_text(insn)!r} ({insn.bytes.hex()}): {reason}",
                stmt.text,
            )
    return code


@functools.lru_cache(maxsize=ASSEMBLED_CACHE)
def assemble_unchecked(text: str, address: int, mode: int) -> bytes:
    """The bytes assemble_checked gives for `text` at `address` when its check passes,
    not decoded back: for sizing a layout (patch/glue.py's first pass) whose final
    encoding assemble_checked then checks. Cached as assemble_checked is."""
    return _prepared(text, address, mode)[2]


def _prepared(text: str, address: int, mode: int) -> tuple[list, list, bytes]:
    """TEXT's statements, its trailing labels, and keystone's bytes for it with
    SYSTEM_ENCODINGS' statements as table bytes and absolute 64-bit operands made
    RIP-relative."""
    statements, trailing = asmcheck.parse(text)
    for stmt in statements:
        if stmt.mnemonic.startswith("."):
            raise AssemblyError(f"directive {stmt.text!r} cannot be checked", stmt.text)
    code = assemble(_keystone_source(_rip_relative(statements, trailing, address, mode),
                                     trailing, mode), address, mode)
    return statements, trailing, code


_ADDRESS_MASK = (1 << 64) - 1
_PLACEHOLDER = "rip + 0x7ffff000"  # a disp32, as every RIP-relative operand has
_REL32 = range(-(1 << 31), 1 << 31)


def _rip_relative(statements, trailing, address: int, mode: int) -> list:
    """In 64-bit code, each absolute memory operand (`[0xffffffff80105000]`, no
    register) as the RIP-relative one that reaches it from where the statement is
    assembled, when that is within a disp32: keystone turns such operands RIP-relative
    itself, but with a wrong displacement for some (`mov rcx, [0x1000]` at 0x1000
    became `[rip + 0x1000]`). The displacement is worked out from the statements'
    addresses after a pass with a placeholder (RIP-relative operands are always
    disp32, so no size changes); one out of a disp32's reach is left to keystone,
    and assemble_checked compares the result with the source either way."""
    if mode != 64:
        return statements
    targets = _absolute_operands(statements)
    far: set[tuple[int, int]] = set()
    while targets:
        trial = _with_operands(statements, {k: _PLACEHOLDER for k in targets if k not in far})
        code = assemble(_keystone_source(trial, trailing, mode), address, mode)
        insns = _decode_exactly(code, address, mode, trial)
        operands, out_of_reach = {}, set()
        for (i, j), target in targets.items():
            disp = (target - insns[i].address - insns[i].size + (1 << 63)) % (1 << 64) - (1 << 63)
            if (i, j) in far or disp not in _REL32:
                out_of_reach.add((i, j))
            else:
                operands[i, j] = f"rip + {disp:#x}" if disp >= 0 else f"rip - {-disp:#x}"
        if out_of_reach == far:
            return _with_operands(statements, operands)
        far = out_of_reach
    return statements


def _absolute_operands(statements) -> dict[tuple[int, int], int]:
    """(statement, operand) -> the address of every memory operand without registers."""
    registers = register_names(64)
    found = {}
    for i, stmt in enumerate(statements):
        for j, text in enumerate(stmt.operands):
            if "[" not in text:
                continue
            try:
                value = asmcheck.source_operand(text, registers, {})
            except asmcheck.Unresolved:
                continue
            if value[0] == "mem" and not +value[3] and value[2] is None:
                found[i, j] = value[4] & _ADDRESS_MASK
    return found


def _with_operands(statements, replaced: dict[tuple[int, int], str]) -> list:
    """STATEMENTS with the bracketed address of the operands in REPLACED rewritten."""
    out = []
    for i, stmt in enumerate(statements):
        operands = list(stmt.operands)
        for (k, j), inside in replaced.items():
            if k == i:
                head, _, rest = operands[j].partition("[")
                operands[j] = f"{head}[{inside}]{rest.partition(']')[2]}"
        if operands == stmt.operands:
            out.append(stmt)
            continue
        text = " ".join((*stmt.prefixes, stmt.mnemonic)) + " " + ", ".join(operands)
        out.append(replace(stmt, text=text, operands=operands))
    return out


def _keystone_source(statements, trailing, mode: int) -> str:
    lines = []
    for stmt in statements:
        lines.extend(f"{label}:" for label in stmt.labels)
        table = system_encoding(stmt.canonical, mode)
        lines.append(".byte " + ", ".join(map(hex, table)) if table else stmt.text)
    lines.extend(f"{label}:" for label in trailing)
    return "\n".join(lines)


def _decode_exactly(code: bytes, address: int, mode: int, statements) -> list:
    insns = []
    for item in decode_all(code, address, mode):
        if isinstance(item, Undecodable):
            raise AssemblyError(
                f"keystone produced undecodable bytes {item.data.hex()} at {item.address:#x}"
            )
        insns.append(item)
    if len(insns) != len(statements):
        source = "; ".join(s.text for s in statements)
        decoded = "; ".join(_insn_text(i) for i in insns)
        raise AssemblyError(
            f"{len(statements)} statements {source!r} decode as {len(insns)} "
            f"instructions {decoded!r}",
            _first_mismatch(statements, insns),
        )
    return insns


def _first_mismatch(statements, insns) -> str | None:
    for stmt, insn in zip(statements, insns, strict=False):
        if not insn.mnemonic.endswith(asmcheck.ALIASES.get(stmt.mnemonic, stmt.mnemonic)):
            return stmt.text
    return statements[-1].text if statements else None


def _label_addresses(statements, trailing, insns, end: int) -> dict[str, int]:
    labels = {}
    for stmt, insn in zip(statements, insns, strict=True):
        labels.update(dict.fromkeys((name.lower() for name in stmt.labels), insn.address))
    labels.update(dict.fromkeys((name.lower() for name in trailing), end))
    return labels


def _insn_text(insn) -> str:
    return f"{insn.mnemonic} {insn.op_str}".strip()
