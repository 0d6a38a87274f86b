"""Verified encodings of the system instructions keystone 0.9.2 gets wrong.

keystone puts a spurious 0x66 on 32-bit lgdt/lidt/sgdt/sidt (lgdt then loads a 24-bit
base), encodes 32-bit `push cs/ss/ds/es` and `pop ds/es/ss` with a 16-bit slot, and
refuses `lret`, `lretq`, `sysretq` and `sysexitq` (shared/UNICORN.md). These byte
strings are the GNU as encodings; tests/x86/test_system_encodings.py assembles every key
with GNU as and compares. Keys are (mode, statement) with the statement lowercase and no
blanks inside operands (asmcheck.Statement.canonical).
"""

from types import MappingProxyType

# ModRM r/m numbering of the 32-bit general registers.
_R32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
# 0f 01 /digit: the ModRM reg field selects the instruction.
_TABLE_OPS = {"sgdt": 0, "sidt": 1, "lgdt": 2, "lidt": 3}


def _register_indirect(digit: int, rm: int) -> bytes:
    """ModRM (and SIB or disp8) for [reg] with mod 00: [esp] needs a SIB byte (0x24),
    [ebp] has no mod-00 form and takes mod 01 with a zero disp8."""
    if rm == 4:
        return bytes(((digit << 3) | 4, 0x24))
    if rm == 5:
        return bytes((0x40 | (digit << 3) | 5, 0))
    return bytes(((digit << 3) | rm,))


_DESCRIPTOR_TABLE_32 = {
    (32, f"{name} [{reg}]"): b"\x0f\x01" + _register_indirect(digit, rm)
    for name, digit in _TABLE_OPS.items()
    for rm, reg in enumerate(_R32)
}

_SEGMENT_PUSH_POP_32 = {
    (32, "push es"): b"\x06",
    (32, "pop es"): b"\x07",
    (32, "push cs"): b"\x0e",
    (32, "push ss"): b"\x16",
    (32, "pop ss"): b"\x17",
    (32, "push ds"): b"\x1e",
    (32, "pop ds"): b"\x1f",
}

_FAR_RETURNS_AND_FAST_CALLS = {
    (32, "lret"): b"\xcb",
    (64, "lret"): b"\xcb",
    (64, "lretq"): b"\x48\xcb",
    (64, "sysretq"): b"\x48\x0f\x07",
    (64, "sysexitq"): b"\x48\x0f\x35",
}

SYSTEM_ENCODINGS = MappingProxyType(
    {**_DESCRIPTOR_TABLE_32, **_SEGMENT_PUSH_POP_32, **_FAR_RETURNS_AND_FAST_CALLS}
)


def canonical(statement: str) -> str:
    """`LGDT [ eax ]` -> `lgdt [eax]`: the spelling of the table's keys."""
    words = statement.strip().lower().split(None, 1)
    if len(words) < 2:
        return words[0] if words else ""
    operands = ", ".join("".join(op.split()) for op in words[1].split(","))
    return f"{words[0]} {operands}"


def system_encoding(statement: str, mode: int) -> bytes | None:
    """The verified encoding of one statement, or None if it is not in the table."""
    return SYSTEM_ENCODINGS.get((mode, canonical(statement)))
