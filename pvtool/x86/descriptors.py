"""Segment and gate descriptors, selectors and the lgdt/lidt pseudo-descriptor.

Layouts from the Intel SDM Vol. 3A, 3.4.5 (segment descriptors), 6.11 and 6.14.1 (IDT
gates, 32- and 64-bit), 5.8.3 (call gates) and 3.5.1 (pseudo-descriptors). Every type
constant lives here once.
"""

import enum
from dataclasses import dataclass

# Type field of a code or data descriptor (S = 1).
ACCESSED = 0x1
WRITABLE = 0x2  # data
READABLE = 0x2  # code
EXPAND_DOWN = 0x4  # data
CONFORMING = 0x4  # code
CODE = 0x8
DATA_RW = WRITABLE
CODE_RX = CODE | READABLE

# Fields of a descriptor read as one little-endian 64-bit integer.
TYPE_SHIFT = 40
S_BIT = 1 << 44  # code or data (1), or system (0)
DPL_SHIFT = 45
PRESENT_BIT = 1 << 47


class SystemType(enum.IntEnum):
    """Type field of a system descriptor (S = 0). In 64-bit mode 9/0xB are the 64-bit TSS
    and 0xC/0xE/0xF the 64-bit gates; the 16-bit types do not exist there."""

    TSS16_AVAILABLE = 0x1
    LDT = 0x2
    TSS16_BUSY = 0x3
    CALL_GATE16 = 0x4
    TASK_GATE = 0x5
    INTERRUPT_GATE16 = 0x6
    TRAP_GATE16 = 0x7
    TSS_AVAILABLE = 0x9
    TSS_BUSY = 0xB
    CALL_GATE = 0xC
    INTERRUPT_GATE = 0xE
    TRAP_GATE = 0xF


GATE_TYPES = frozenset(
    (SystemType.CALL_GATE16, SystemType.TASK_GATE, SystemType.INTERRUPT_GATE16,
     SystemType.TRAP_GATE16, SystemType.CALL_GATE, SystemType.INTERRUPT_GATE,
     SystemType.TRAP_GATE)
)  # fmt: skip
DESCRIPTOR_SIZE = 8
GATE64_SIZE = 16


def _check(name: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name} {value:#x} does not fit in {bits} bits")


# ---- selectors


def selector(index: int, *, ldt: bool = False, rpl: int = 0) -> int:
    """The selector of descriptor `index` in the GDT (or LDT) with requested ring `rpl`."""
    _check("index", index, 13)
    _check("rpl", rpl, 2)
    return index << 3 | int(ldt) << 2 | rpl


def selector_fields(value: int) -> tuple[int, bool, int]:
    """(index, ldt, rpl) of a selector."""
    return value >> 3, bool(value & 4), value & 3


def gdt_offset(selector: int, limit: int) -> int | None:
    """Where SELECTOR's descriptor is in a GDT of LIMIT, in bytes; None for the null
    selector, an LDT selector, or one whose 8 bytes pass the limit (3.4.2: the CPU's
    #GP(selector))."""
    offset = selector & ~7
    if selector & 4 or offset == 0 or offset + DESCRIPTOR_SIZE - 1 > limit:
        return None
    return offset


# ---- segment descriptors


@dataclass(frozen=True, slots=True)
class SegmentDescriptor:
    """An 8-byte code, data or system-segment descriptor. `limit` is the raw 20-bit field;
    with `granularity` it counts 4 KiB units (see byte_limit)."""

    base: int = 0
    limit: int = 0
    type: int = 0
    s: bool = True  # code/data (True) or system (False)
    dpl: int = 0
    present: bool = True
    db: bool = True  # D/B: 32-bit default operand size / stack size
    long: bool = False  # L: 64-bit code segment
    granularity: bool = False  # G
    avl: bool = False

    @classmethod
    def flat(cls, type: int, dpl: int = 0, *, base: int = 0, byte_limit: int = 0xFFFF_FFFF,
             **fields) -> "SegmentDescriptor":  # fmt: skip
        """A descriptor covering `byte_limit` + 1 bytes, G chosen as the hardware needs."""
        granularity = byte_limit > 0xF_FFFF
        if granularity and byte_limit & 0xFFF != 0xFFF:
            raise ValueError(f"limit {byte_limit:#x} above 1 MiB must end in 0xfff")
        limit = byte_limit >> 12 if granularity else byte_limit
        return cls(base, limit, type, dpl=dpl, granularity=granularity, **fields)

    @property
    def byte_limit(self) -> int:
        """The last valid offset, with G applied."""
        return (self.limit << 12) | 0xFFF if self.granularity else self.limit

    @property
    def is_code(self) -> bool:
        return self.s and bool(self.type & CODE)

    @property
    def is_system(self) -> bool:
        return not self.s

    def to_int(self) -> int:
        for name, value, bits in (("base", self.base, 32), ("limit", self.limit, 20),
                                  ("type", self.type, 4), ("dpl", self.dpl, 2)):  # fmt: skip
            _check(name, value, bits)
        return (
            (self.limit & 0xFFFF)
            | (self.base & 0xFF_FFFF) << 16
            | self.type << TYPE_SHIFT
            | int(self.s) << 44
            | self.dpl << DPL_SHIFT
            | int(self.present) << 47
            | (self.limit >> 16) << 48
            | int(self.avl) << 52
            | int(self.long) << 53
            | int(self.db) << 54
            | int(self.granularity) << 55
            | (self.base >> 24) << 56
        )

    def encode(self) -> bytes:
        return self.to_int().to_bytes(8, "little")

    @classmethod
    def decode(cls, data: bytes | int) -> "SegmentDescriptor":
        raw = data if isinstance(data, int) else int.from_bytes(data[:8], "little")
        return cls(
            base=((raw >> 16) & 0xFF_FFFF) | ((raw >> 56) & 0xFF) << 24,
            limit=(raw & 0xFFFF) | ((raw >> 48) & 0xF) << 16,
            type=(raw >> 40) & 0xF,
            s=bool(raw >> 44 & 1),
            dpl=(raw >> 45) & 3,
            present=bool(raw >> 47 & 1),
            avl=bool(raw >> 52 & 1),
            long=bool(raw >> 53 & 1),
            db=bool(raw >> 54 & 1),
            granularity=bool(raw >> 55 & 1),
        )


# ---- gates


@dataclass(frozen=True, slots=True)
class GateDescriptor:
    """An interrupt, trap, call or task gate. A task gate's `selector` names a TSS and
    its offset is unused; `param_count` is for call gates, `ist` for 64-bit IDT gates."""

    selector: int
    offset: int
    type: int = SystemType.INTERRUPT_GATE
    dpl: int = 0
    present: bool = True
    param_count: int = 0
    ist: int = 0

    def _low(self, offset_bits: int) -> int:
        fields = (
            ("selector", self.selector, 16), ("type", self.type, 4), ("dpl", self.dpl, 2),
            ("offset", self.offset, offset_bits), ("param_count", self.param_count, 5),
            ("ist", self.ist, 3),
        )  # fmt: skip
        for name, value, bits in fields:
            _check(name, value, bits)
        if self.type not in GATE_TYPES:
            raise ValueError(f"type {self.type:#x} is not a gate")
        return (
            (self.offset & 0xFFFF)
            | self.selector << 16
            | (self.param_count | self.ist) << 32
            | self.type << 40
            | self.dpl << 45
            | int(self.present) << 47
            | ((self.offset >> 16) & 0xFFFF) << 48
        )

    def encode(self) -> bytes:
        """The 8-byte gate of a 32-bit IDT, GDT or LDT."""
        return self._low(32).to_bytes(8, "little")

    def encode64(self) -> bytes:
        """The 16-byte gate of a 64-bit IDT (or a 64-bit call gate)."""
        return self._low(64).to_bytes(8, "little") + (self.offset >> 32).to_bytes(8, "little")

    @classmethod
    def decode(cls, data: bytes) -> "GateDescriptor":
        """Decode 8 bytes as a 32-bit gate, 16 bytes as a 64-bit gate."""
        raw = int.from_bytes(data[:8], "little")
        gate_type = (raw >> 40) & 0xF
        wide = len(data) >= GATE64_SIZE
        low5 = (raw >> 32) & 0x1F
        offset = (raw & 0xFFFF) | ((raw >> 48) & 0xFFFF) << 16
        if wide:
            offset |= int.from_bytes(data[8:12], "little") << 32
        return cls(
            selector=(raw >> 16) & 0xFFFF,
            offset=offset,
            type=gate_type,
            dpl=(raw >> 45) & 3,
            present=bool(raw >> 47 & 1),
            param_count=low5 if gate_type in _CALL_GATES and not wide else 0,
            ist=low5 & 7 if wide else 0,
        )


_CALL_GATES = frozenset((SystemType.CALL_GATE16, SystemType.CALL_GATE))


# ---- the lgdt/lidt operand


@dataclass(frozen=True, slots=True)
class PseudoDescriptor:
    """The 6-byte (10 in 64-bit mode) operand of lgdt/lidt/sgdt/sidt: 16-bit limit, then
    the base. (With a 0x66 prefix, 32-bit lgdt keeps only 24 bits of the base.)"""

    limit: int
    base: int

    def encode(self, mode: int = 32) -> bytes:
        _check("limit", self.limit, 16)
        _check("base", self.base, mode)
        return self.limit.to_bytes(2, "little") + self.base.to_bytes(mode // 8, "little")

    @classmethod
    def decode(cls, data: bytes, mode: int = 32) -> "PseudoDescriptor":
        size = 2 + mode // 8
        if len(data) < size:
            raise ValueError(f"a {mode}-bit pseudo-descriptor needs {size} bytes")
        return cls(int.from_bytes(data[:2], "little"), int.from_bytes(data[2:size], "little"))
