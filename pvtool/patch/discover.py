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

The cost is linear in the image (a distribution's Linux has 13 MiB of code): every
region is decoded once up front by capstone's lite mode, a chunk per call (isa.py),
into per-byte tables (`_Region`): the size of the instruction starting at each byte,
and what it is to discovery (a branch, a path end, a catalogue candidate). Recursion
and the sweep then walk those tables, and decode afresh only where they start off the
linear sweep's grid. No instruction object is kept: a CodeMap hands out `Insn`s decoded
on demand, and an Insn decodes itself with detail (`cs`) only when asked, which
find_sites does for the catalogue's candidates alone (catalogue.may_classify).
"""

import bisect
import re
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import compress

from capstone import x86_const as X

from pvtool.x86.catalogue import may_classify
from pvtool.x86.isa import (
    MAX_INSN_SIZE,
    Undecodable,
    decode_all_lite,
    decode_one,
    decode_one_lite,
    lite_decoder,
)

_NAME = lite_decoder(32).insn_name
_JCC = frozenset(map(_NAME, (
    X.X86_INS_JA, X.X86_INS_JAE, X.X86_INS_JB, X.X86_INS_JBE, X.X86_INS_JE, X.X86_INS_JNE,
    X.X86_INS_JG, X.X86_INS_JGE, X.X86_INS_JL, X.X86_INS_JLE, X.X86_INS_JO, X.X86_INS_JNO,
    X.X86_INS_JP, X.X86_INS_JNP, X.X86_INS_JS, X.X86_INS_JNS, X.X86_INS_JCXZ,
    X.X86_INS_JECXZ, X.X86_INS_JRCXZ, X.X86_INS_LOOP, X.X86_INS_LOOPE, X.X86_INS_LOOPNE)))
_FAR = frozenset(map(_NAME, (X.X86_INS_LCALL, X.X86_INS_LJMP)))
_JUMPS = frozenset(map(_NAME, (X.X86_INS_JMP, X.X86_INS_LJMP)))
_BRANCHES = _JCC | _FAR | _JUMPS | {_NAME(X.X86_INS_CALL)}
_PATH_ENDS = frozenset(map(_NAME, (
    X.X86_INS_RET, X.X86_INS_RETF, X.X86_INS_RETFQ, X.X86_INS_IRET, X.X86_INS_IRETD,
    X.X86_INS_IRETQ, X.X86_INS_UD0, X.X86_INS_UD1, X.X86_INS_UD2, X.X86_INS_SYSEXIT,
    X.X86_INS_SYSEXITQ, X.X86_INS_SYSRET, X.X86_INS_SYSRETQ))) | _JUMPS
_MAX_TABLE_ENTRIES = 4096
_FLOW = _BRANCHES | _PATH_ENDS

# _Region.flags bits: what an instruction starting at that byte is to discovery.
_ENDS = 1  # no fall-through
_TABLE = 2  # jmp through memory: maybe a jump table
_CANDIDATE = 4  # may be a catalogue instruction
_BAD = 8  # no instruction starts here
# _Region.origin: who put an instruction starting at that byte into the map.
_RECURSION, _SWEEP = 1, 2


@dataclass(frozen=True, slots=True)
class Insn:
    """A decoded instruction; `cs` is capstone's instruction with detail, decoded on
    demand (and cached by isa.decode_one)."""

    address: int
    size: int
    bytes: bytes
    mnemonic: str
    op_str: str
    mode: int

    @property
    def end(self) -> int:
        return self.address + self.size

    @property
    def cs(self):
        return decode_one(self.bytes, self.address, self.mode)


@dataclass(frozen=True, slots=True)
class Coverage:
    """Bytes of the executable regions, by how they were accounted for."""

    recursion: int
    sweep: int
    undecodable: int

    @property
    def total(self) -> int:
        return self.recursion + self.sweep + self.undecodable


class _Region:
    """One executable region and its per-byte tables (see the module docstring)."""

    __slots__ = ("start", "data", "end", "size", "flags", "origin", "covered")

    def __init__(self, start: int, data: bytes):
        self.start, self.data, self.end = start, bytes(data), start + len(data)
        self.size = bytearray(len(data))  # size of the instruction starting here, or 0
        self.flags = bytearray(len(data))
        self.origin = bytearray(len(data))
        self.covered = bytearray(len(data))  # 1 where a recursion instruction lies

    def starts(self) -> Iterator[int]:
        """Addresses of the mapped instructions, in order."""
        return compress(range(self.start, self.end), self.origin)


class _Instructions(Mapping):
    """address -> Insn of every instruction of a CodeMap, decoded when looked up."""

    def __init__(self, code: "CodeMap"):
        self._code = code

    def __getitem__(self, address: int) -> Insn:
        insn = self._code.instruction_at(address)
        if insn is None:
            raise KeyError(address)
        return insn

    def __iter__(self) -> Iterator[int]:
        return iter(self._code.starts)

    def __len__(self) -> int:
        return len(self._code.starts)


class CodeMap:
    """What discovery found. Read-only."""

    def __init__(self, mode: int, regions: list[_Region], branch_targets: frozenset[int],
                 undecodable: list[Undecodable], coverage: Coverage,
                 jump_tables: dict[int, list[int]]):
        self.mode = mode
        self._regions = regions
        self._region_starts = [r.start for r in regions]
        self.starts = array("I" if mode == 32 else "Q")
        for region in regions:
            self.starts.extend(region.starts())
        self.branch_targets = branch_targets
        self.undecodable = undecodable  # in address order
        self.coverage = coverage
        self.jump_tables = jump_tables  # jmp address -> its entries
        self.instructions = _Instructions(self)

    def _locate(self, address: int) -> tuple[_Region, int] | tuple[None, None]:
        i = bisect.bisect_right(self._region_starts, address) - 1
        if i >= 0 and address < self._regions[i].end:
            return self._regions[i], address - self._regions[i].start
        return None, None

    def reached_by_recursion(self, address: int) -> bool:
        """Whether an instruction found by recursive disassembly starts at `address`."""
        region, offset = self._locate(address)
        return region is not None and region.origin[offset] == _RECURSION

    def starts_instruction(self, address: int) -> bool:
        region, offset = self._locate(address)
        return region is not None and region.origin[offset] != 0

    def instruction_at(self, address: int) -> Insn | None:
        region, offset = self._locate(address)
        if region is None or not region.origin[offset]:
            return None
        return self._insn(region, offset)

    def _insn(self, region: _Region, offset: int) -> Insn:
        code = region.data[offset : offset + region.size[offset]]
        _, size, mnemonic, op_str = decode_one_lite(code, region.start + offset, self.mode)
        return Insn(region.start + offset, size, code, mnemonic, op_str, self.mode)

    def iter_instructions(self, start: int = 0, end: int = 1 << 64) -> Iterator[Insn]:
        """Instructions starting in [start, end), in address order, decoded as they go."""
        lo = bisect.bisect_left(self.starts, start)
        hi = bisect.bisect_left(self.starts, end)
        for address in self.starts[lo:hi]:
            yield self._insn(*self._locate(address))

    def instructions_in(self, start: int, end: int) -> list[Insn]:
        """Instructions starting in [start, end), in address order."""
        return list(self.iter_instructions(start, end))

    def site_candidates(self) -> Iterator[Insn]:
        """The instructions that may be catalogue instructions (catalogue.may_classify),
        in address order: the only ones worth decoding with detail to find sites."""
        for region in self._regions:
            for offset in compress(range(len(region.data)), region.flags):
                if region.origin[offset] and region.flags[offset] & _CANDIDATE:
                    yield self._insn(region, offset)


class _Discovery:
    def __init__(self, regions, data_regions, mode: int):
        self.mode = mode
        self.mask = (1 << mode) - 1
        self.word = mode // 8
        self.regions = sorted((_Region(a, d) for a, d in regions if d), key=lambda r: r.start)
        _check_disjoint(self.regions)
        self.starts = [r.start for r in self.regions]
        self.readable = sorted(
            [(r.start, r.data) for r in self.regions] + [(a, bytes(d)) for a, d in data_regions]
        )
        self.direct: dict[int, int] = {}  # branch address -> its direct target
        self.lowest = self.regions[0].start if self.regions else 0
        self.highest = self.regions[-1].end if self.regions else 0
        self.long_hex = _hex_literals(self.lowest, self.highest, self.mask)
        self.targets: set[int] = set()
        self.candidates: set[int] = set()  # possible pointers, kept if an insn starts there
        self.swept_targets: set[int] = set()  # direct targets of swept code, likewise
        self.jump_tables: dict[int, list[int]] = {}
        self.undecodable: list[Undecodable] = []

    def region_of(self, address: int) -> _Region | None:
        i = bisect.bisect_right(self.starts, address) - 1
        if i >= 0 and address < self.regions[i].end:
            return self.regions[i]
        return None

    # ---- decoding into the tables

    def decode_regions(self) -> None:
        """The linear sweep's grid: every region decoded once, in lite mode. Every
        immediate (and displacement) that points into a region is a possible target."""
        for region in self.regions:
            base, sizes = region.start, region.size
            for item in decode_all_lite(region.data, base, self.mode):
                if item.__class__ is Undecodable:
                    offset = item.address - base
                    region.flags[offset : offset + item.size] = bytes([_BAD]) * item.size
                    continue
                address, size, mnemonic, op_str = item
                sizes[address - base] = size
                if mnemonic in _FLOW or " " in mnemonic or may_classify(mnemonic, op_str):
                    self._note(region, address, size, mnemonic, op_str)
                if "0x" in op_str:
                    self._immediates(op_str)

    def _immediates(self, op_str: str) -> None:
        for text in self.long_hex(op_str):
            value = int(text, 16) & self.mask
            if self.lowest <= value < self.highest:
                self.candidates.add(value)

    def _note(self, region: _Region, address: int, size: int, mnemonic: str,
              op_str: str) -> None:
        """Record what discovery needs of a branch, path end or catalogue candidate.
        capstone prints prefixes into the mnemonic ("notrack jmp", "repz ret")."""
        offset = address - region.start
        name = mnemonic.rpartition(" ")[2]
        flags = 0
        if name in _BRANCHES:
            flags = self._branch(address, name, op_str, region.data[offset : offset + size])
        elif name in _PATH_ENDS:
            flags = _ENDS
        if may_classify(mnemonic, op_str):
            flags |= _CANDIDATE
        region.flags[offset] = flags

    def _branch(self, address: int, name: str, op_str: str, code: bytes) -> int:
        if name in _FAR:  # the offset follows the selector; rare, so decode with detail
            ops = decode_one(code, address, self.mode).operands
            if ops and ops[-1].type == X.X86_OP_IMM:
                self.direct[address] = ops[-1].imm & self.mask
        elif op_str.startswith("0x"):  # a relative branch prints its absolute target
            self.direct[address] = int(op_str, 16) & self.mask
        flags = _ENDS if name in _PATH_ENDS else 0
        return flags | (_TABLE if name == "jmp" and "[" in op_str else 0)

    def size_at(self, region: _Region, offset: int, limit: int) -> int:
        """The size of the instruction at `offset` if it ends by `limit`, else 0."""
        size = region.size[offset]
        if not size and not region.flags[offset] & _BAD:
            address = region.start + offset
            found = decode_one_lite(region.data[offset : offset + MAX_INSN_SIZE], address,
                                    self.mode)
            if found is None:
                region.flags[offset] = _BAD
                return 0
            size = region.size[offset] = found[1]
            self._note(region, *found)
            if "0x" in found[3]:
                self._immediates(found[3])
        return size if offset + size <= limit else 0

    # ---- recursion

    def recurse(self, entry_points: Iterable[int]) -> None:
        worklist = [a & self.mask for a in entry_points]
        self.targets.update(worklist)
        while worklist:
            self._follow(worklist.pop(), worklist)

    def _follow(self, address: int, worklist: list[int]) -> None:
        """Decode one path from `address` until it ends or meets decoded code."""
        region = self.region_of(address)
        while region is not None:
            offset = address - region.start
            if region.origin[offset] == _RECURSION:
                return
            size = self.size_at(region, offset, len(region.data))
            if not size:
                return
            region.origin[offset] = _RECURSION
            region.covered[offset : offset + size] = b"\x01" * size
            flags = region.flags[offset]
            targets = self.flow(region, address, flags)
            self.targets.update(targets)
            worklist.extend(targets)
            if flags & _ENDS:
                return
            address += size
            if address >= region.end:
                region = self.region_of(address)

    def flow(self, region: _Region, address: int, flags: int) -> list[int]:
        """The direct targets (and jump-table entries) of the instruction at `address`."""
        if flags & _TABLE:
            return self.jump_table(region, address)
        target = self.direct.get(address)
        return [] if target is None else [target]

    def jump_table(self, region: _Region, address: int) -> list[int]:
        """Entries of `jmp [index*wordsize + table]` while they point into code."""
        offset = address - region.start
        op = decode_one(region.data[offset : offset + region.size[offset]], address,
                        self.mode).operands[0]
        mem = op.mem
        if mem.base or not mem.index or mem.scale != self.word or op.size != self.word:
            return []
        entries = []
        entry = mem.disp & self.mask
        while len(entries) < _MAX_TABLE_ENTRIES:
            value = self.read_word(entry)
            if value is None or self.region_of(value) is None:
                break
            entries.append(value)
            entry += self.word
        if entries:
            self.jump_tables[address] = entries
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
        swept, offset, bad = 0, start, None
        sizes, flags = region.size, region.flags
        while offset < end:
            size = sizes[offset]
            if not size or offset + size > end:
                size = self.size_at(region, offset, end)
            if not size:
                bad = offset if bad is None else bad
                offset += 1
                continue
            if bad is not None:
                self._undecodable(region, bad, offset)
                bad = None
            region.origin[offset] = _SWEEP
            if flags[offset]:
                address = region.start + offset
                self.swept_targets.update(self.flow(region, address, flags[offset]))
            swept += size
            offset += size
        if bad is not None:
            self._undecodable(region, bad, end)
        return swept

    def _undecodable(self, region: _Region, start: int, end: int) -> None:
        self.undecodable.append(Undecodable(region.start + start, region.data[start:end]))

    # ---- possible function pointers

    def collect_data_words(self) -> None:
        """Every aligned pointer-sized word of the code and data regions that points
        into a region."""
        lowest, highest = self.lowest, self.highest
        for start, data in self.readable:
            first = -start % self.word  # the first aligned address
            count = max(0, len(data) - first) // self.word
            words = array("I" if self.word == 4 else "Q")
            words.frombytes(data[first : first + count * self.word])
            self.candidates.update(
                w for w in words if lowest <= w < highest and self.region_of(w))

    def code_map(self, swept: int) -> CodeMap:
        recursion = sum(len(r.covered) - r.covered.count(0) for r in self.regions)
        bad = sum(run.size for run in self.undecodable)
        code = CodeMap(self.mode, self.regions, frozenset(), sorted(
            self.undecodable, key=lambda run: run.address), Coverage(recursion, swept, bad),
            self.jump_tables)
        starts = self.candidates | self.swept_targets
        code.branch_targets = frozenset(
            self.targets | {a for a in starts if code.starts_instruction(a)})
        return code


def _hex_literals(lowest: int, highest: int, mask: int):
    """findall of the hex literals in capstone's operand text long enough to be an
    address in [lowest, highest), as is or negated (capstone prints `-0x10`)."""
    shortest = min(len(f"{lowest:x}"), len(f"{-(highest - 1) & mask:x}"))
    return re.compile(rf"-?0x[0-9a-f]{{{shortest},}}").findall


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
    work.decode_regions()
    work.recurse(entry_points)
    if work.regions:
        work.collect_data_words()
    swept = work.sweep()
    return work.code_map(swept)
