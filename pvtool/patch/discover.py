"""Code discovery: which executable bytes are instructions, and where control can land.

The patcher rewrites instructions in place, and an in-place rewrite that spans a
location some other code jumps to breaks that code. So discovery has two duties: find
every instruction (privileged ones hide anywhere), and over-approximate the set of
places control can arrive at.

1. Recursive disassembly from every entry point (the image entry and every function
   symbol): follow direct jmp/jcc/call/loop/jecxz targets (and far jmp/call offsets:
   guests use flat segments, e.g. the `ljmp 0x8:1f` after lgdt); a path stops at
   ret/retf/iret/jmp/ud2/sysexit/sysret and continues after call, int and hlt.
   `jmp [index*4 + table]` is a jump table: its entries are read while they point into
   code, and followed.
2. A linear sweep over every executable byte recursion did not reach, so nothing goes
   unseen. capstone stops silently at a byte it cannot decode; here every such run is
   recorded in `undecodable`, and coverage accounts for every byte:
   recursion + sweep + undecodable == the regions' size.
3. Branch targets, conservatively: every entry point, every direct target and jump-table
   entry found by recursion, plus, when they equal the start of a decoded instruction,
   the direct targets of swept code (it may be real code reached in a way we missed),
   every immediate operand, and every aligned pointer-sized word of the regions and
   data regions (a function pointer in .data, a callback table in .rodata). A false
   positive only costs an in-place rewrite (the site gets a detour or a trap instead);
   a false negative would corrupt the guest. Pointers at unaligned addresses and
   computed ones are not seen: the report should say a rewrite is in-place so a human
   can check.

Overlapping instructions (a jump into the middle of another instruction) are kept:
both decodings are real paths, and a privileged instruction in either is a site.
"""

import bisect
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from capstone import CsInsn
from capstone import x86_const as X

from pvtool.x86.isa import MAX_INSN_SIZE, Undecodable, decode_all, decoder

_JCC = frozenset(
    (X.X86_INS_JA, X.X86_INS_JAE, X.X86_INS_JB, X.X86_INS_JBE, X.X86_INS_JE, X.X86_INS_JNE,
     X.X86_INS_JG, X.X86_INS_JGE, X.X86_INS_JL, X.X86_INS_JLE, X.X86_INS_JO, X.X86_INS_JNO,
     X.X86_INS_JP, X.X86_INS_JNP, X.X86_INS_JS, X.X86_INS_JNS, X.X86_INS_JCXZ,
     X.X86_INS_JECXZ, X.X86_INS_JRCXZ, X.X86_INS_LOOP, X.X86_INS_LOOPE, X.X86_INS_LOOPNE)
)  # fmt: skip
_CALLS = frozenset((X.X86_INS_CALL, X.X86_INS_LCALL))
_JUMPS = frozenset((X.X86_INS_JMP, X.X86_INS_LJMP))
_PATH_ENDS = frozenset(
    (X.X86_INS_RET, X.X86_INS_RETF, X.X86_INS_RETFQ, X.X86_INS_IRET, X.X86_INS_IRETD,
     X.X86_INS_IRETQ, X.X86_INS_UD0, X.X86_INS_UD1, X.X86_INS_UD2, X.X86_INS_SYSEXIT,
     X.X86_INS_SYSEXITQ, X.X86_INS_SYSRET, X.X86_INS_SYSRETQ)
) | _JUMPS  # fmt: skip
_MAX_TABLE_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class Insn:
    """A decoded instruction; `cs` is capstone's instruction with detail."""

    address: int
    size: int
    bytes: bytes
    mnemonic: str
    op_str: str
    cs: CsInsn

    @property
    def end(self) -> int:
        return self.address + self.size

    @classmethod
    def of(cls, cs) -> "Insn":
        return cls(cs.address, cs.size, bytes(cs.bytes), cs.mnemonic, cs.op_str, cs)


@dataclass(frozen=True, slots=True)
class Coverage:
    """Bytes of the executable regions, by how they were accounted for."""

    recursion: int
    sweep: int
    undecodable: int

    @property
    def total(self) -> int:
        return self.recursion + self.sweep + self.undecodable


@dataclass(eq=False)
class CodeMap:
    """What discovery found. Read-only: instructions_in() indexes the instructions once."""

    mode: int
    instructions: dict[int, Insn] = field(repr=False)  # address -> instruction
    branch_targets: frozenset[int] = field(repr=False)
    undecodable: list[Undecodable]  # in address order
    coverage: Coverage
    jump_tables: dict[int, list[int]] = field(repr=False)  # jmp address -> its entries
    recursive: frozenset[int] = field(repr=False)  # starts of instructions recursion found

    def __post_init__(self):
        self._order = sorted(self.instructions)

    def reached_by_recursion(self, address: int) -> bool:
        """Whether an instruction found by recursive disassembly starts at `address`."""
        return address in self.recursive

    def instructions_in(self, start: int, end: int) -> list[Insn]:
        """Instructions starting in [start, end), in address order."""
        lo = bisect.bisect_left(self._order, start)
        hi = bisect.bisect_left(self._order, end)
        return [self.instructions[a] for a in self._order[lo:hi]]


class _Region:
    __slots__ = ("start", "data", "end", "covered")

    def __init__(self, start: int, data: bytes):
        self.start, self.data, self.end = start, bytes(data), start + len(data)
        self.covered = bytearray(len(data))  # 1 where a recursion instruction lies


class _Discovery:
    def __init__(self, regions, data_regions, mode: int):
        self.mode = mode
        self.mask = (1 << mode) - 1
        self.word = mode // 8
        self.engine = decoder(mode)
        self.regions = sorted((_Region(a, d) for a, d in regions if d), key=lambda r: r.start)
        self.starts = [r.start for r in self.regions]
        self.readable = sorted(
            [(r.start, r.data) for r in self.regions] + [(a, bytes(d)) for a, d in data_regions]
        )
        self.instructions: dict[int, Insn] = {}
        self.recursive: set[int] = set()
        self.targets: set[int] = set()
        self.candidates: set[int] = set()  # possible pointers, kept if an insn starts there
        self.swept_targets: set[int] = set()  # direct targets of swept code, likewise
        self.jump_tables: dict[int, list[int]] = {}
        self.undecodable: list[Undecodable] = []
        _check_disjoint(self.regions)

    def region_of(self, address: int) -> _Region | None:
        i = bisect.bisect_right(self.starts, address) - 1
        if i >= 0 and address < self.regions[i].end:
            return self.regions[i]
        return None

    # ---- recursion

    def recurse(self, entry_points: Iterable[int]) -> None:
        worklist = [a & self.mask for a in entry_points]
        self.targets.update(worklist)
        while worklist:
            self._follow(worklist.pop(), worklist)

    def _follow(self, address: int, worklist: list[int]) -> None:
        """Decode one path from `address` until it ends or meets decoded code."""
        while address not in self.recursive:
            region = self.region_of(address)
            insn = self._decode_at(region, address) if region else None
            if insn is None:
                return
            self.instructions[address] = insn
            self.recursive.add(address)
            offset = address - region.start
            region.covered[offset : offset + insn.size] = b"\x01" * insn.size
            targets, falls_through = self.flow(insn)
            self.targets.update(targets)
            worklist.extend(targets)
            if not falls_through:
                return
            address = insn.end

    def _decode_at(self, region: _Region, address: int) -> Insn | None:
        offset = address - region.start
        window = region.data[offset : offset + MAX_INSN_SIZE]
        cs = next(self.engine.disasm(window, address, 1), None)
        return Insn.of(cs) if cs is not None else None

    def flow(self, insn: Insn) -> tuple[list[int], bool]:
        """(direct targets, whether execution can continue with the next instruction)."""
        iid = insn.cs.id
        if iid not in _JCC and iid not in _CALLS and iid not in _PATH_ENDS:
            return [], True
        targets = []
        if iid in _JCC or iid in _CALLS or iid in _JUMPS:
            ops = insn.cs.operands
            # the last operand: a far jmp/call's offset follows its selector
            targets = [op.imm & self.mask for op in ops[-1:] if op.type == X.X86_OP_IMM]
            if iid == X.X86_INS_JMP and ops and ops[0].type == X.X86_OP_MEM:
                targets = self.jump_table(insn, ops[0])
        return targets, iid not in _PATH_ENDS

    def jump_table(self, insn: Insn, op) -> list[int]:
        """Entries of `jmp [index*wordsize + table]` while they point into code."""
        mem = op.mem
        if mem.base or not mem.index or mem.scale != self.word or op.size != self.word:
            return []
        entries = []
        address = mem.disp & self.mask
        while len(entries) < _MAX_TABLE_ENTRIES:
            value = self.read_word(address)
            if value is None or self.region_of(value) is None:
                break
            entries.append(value)
            address += self.word
        if entries:
            self.jump_tables[insn.address] = entries
        return entries

    def read_word(self, address: int) -> int | None:
        for start, data in self.readable:
            if start <= address and address + self.word <= start + len(data):
                offset = address - start
                return int.from_bytes(data[offset : offset + self.word], "little")
        return None

    # ---- linear sweep

    def sweep(self) -> int:
        """Decode every byte recursion left; return the bytes swept into instructions.

        A linear sweep through data falls out of step with the code after it (a jump
        table's words decode as instructions that run into the next function). So each
        gap is cut at its anchors, the possible targets (pointer-like words and
        immediates) that fall inside it, and every piece is decoded on its own.
        """
        anchors = sorted(self.candidates)
        swept = 0
        for region in self.regions:
            for start, end in _gaps(region.covered):
                for piece_start, piece_end in _cut(start, end, region.start, anchors):
                    swept += self._sweep_piece(region, piece_start, piece_end)
        return swept

    def _sweep_piece(self, region: _Region, start: int, end: int) -> int:
        swept = 0
        for item in decode_all(region.data[start:end], region.start + start, self.mode):
            if isinstance(item, Undecodable):
                self.undecodable.append(item)
                continue
            insn = Insn.of(item)
            self.instructions[insn.address] = insn
            swept += insn.size
            self.swept_targets.update(self.flow(insn)[0])
        return swept

    # ---- possible function pointers

    def collect_immediates(self, insns: Iterable[Insn]) -> None:
        for insn in insns:
            for op in insn.cs.operands:
                if op.type == X.X86_OP_IMM:
                    self.candidates.add(op.imm & self.mask)

    def collect_data_words(self) -> None:
        """Every aligned pointer-sized word of the code and data regions."""
        layout = "<I" if self.word == 4 else "<Q"
        for start, data in self.readable:
            first = -start % self.word  # the first aligned address
            count = max(0, len(data) - first) // self.word
            words = data[first : first + count * self.word]
            self.candidates.update(word for (word,) in struct.iter_unpack(layout, words))

    def code_map(self, swept: int) -> CodeMap:
        starts = self.instructions.keys()
        targets = self.targets | ((self.candidates | self.swept_targets) & starts)
        recursion = sum(sum(region.covered) for region in self.regions)
        bad = sum(run.size for run in self.undecodable)
        return CodeMap(
            mode=self.mode,
            instructions=self.instructions,
            branch_targets=frozenset(targets),
            undecodable=sorted(self.undecodable, key=lambda run: run.address),
            coverage=Coverage(recursion, swept, bad),
            jump_tables=self.jump_tables,
            recursive=frozenset(self.recursive),
        )


def _gaps(covered: bytearray):
    """[start, end) runs of zero bytes."""
    position, size = 0, len(covered)
    while position < size:
        start = covered.find(0, position)
        if start < 0:
            return
        end = covered.find(1, start)
        end = size if end < 0 else end
        yield start, end
        position = end


def _cut(start: int, end: int, base: int, anchors: list[int]):
    """[start, end) (offsets from `base`) cut at every anchor address inside it."""
    lo = bisect.bisect_right(anchors, base + start)
    hi = bisect.bisect_left(anchors, base + end)
    cuts = [start] + [a - base for a in anchors[lo:hi]] + [end]
    return list(zip(cuts, cuts[1:], strict=False))


def _check_disjoint(regions: list[_Region]) -> None:
    for before, after in zip(regions, regions[1:], strict=False):
        if after.start < before.end:
            raise ValueError(f"executable regions overlap at {after.start:#x}")


def discover(
    regions: list[tuple[int, bytes]],
    entry_points: Iterable[int],
    *,
    mode: int = 32,
    data_regions: list[tuple[int, bytes]] = (),
) -> CodeMap:
    """Find the instructions and branch targets of the executable `regions`
    ((address, bytes) pairs), starting from `entry_points`; `data_regions` are the
    non-executable bytes the image maps, read for jump tables and function pointers."""
    work = _Discovery(regions, data_regions, mode)
    work.recurse(entry_points)
    work.collect_data_words()
    work.collect_immediates(list(work.instructions.values()))
    before = set(work.instructions)
    swept = work.sweep()
    work.collect_immediates(i for a, i in work.instructions.items() if a not in before)
    return work.code_map(swept)
