"""What discovery found, held in per-byte tables rather than instruction objects.

A distribution's Linux has 13 MiB of code, over four million instructions: a Python
object each (with capstone's detail) is gigabytes. So each executable region keeps
bytearrays as long as itself (`Region`): the size of the instruction starting at each
byte, what that instruction is to discovery (a branch, a path end, a catalogue
candidate), whether the map holds it and who found it, and how each byte was accounted
for. A CodeMap hands out `Insn`s decoded on demand, and an Insn decodes itself with
detail (`cs`) only when asked.
"""

import bisect
import re
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import compress

from pvtool.x86.isa import (
    MAX_INSN_SIZE,
    Undecodable,
    decode_all_lite,
    decode_one,
    decode_one_lite,
)

# Region.flags bits: what an instruction starting at that byte is to discovery.
ENDS = 1  # no fall-through
TABLE = 2  # jmp through memory: maybe a jump table
CANDIDATE = 4  # may be a catalogue instruction (catalogue.may_classify)
BAD = 8  # no instruction starts here
DIRECT = 16  # a branch with a direct target (discover.py keeps it)
IMMEDIATE = 32  # an operand holds an address in a region (discover.py keeps it)
# Region.origin: who put the instruction starting at that byte into the map.
RECURSION, SWEEP = 1, 2
# Region.covered: how each byte was accounted for (0: not yet; the sweep takes the rest).
FROM_ENTRY, FROM_SYMBOL, FROM_POINTER, DATA, FROM_PROLOGUE = 1, 2, 3, 4, 5
_NONZERO = re.compile(b"[^\x00]")


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
    """Bytes of the executable regions, by how they were accounted for: recursion from
    the entry, from function symbols, from pointers and from function prologues (code),
    data inside the regions (headers, notes, jump tables), the sweep (possible code)
    and undecodable."""

    recursion: int
    sweep: int
    undecodable: int
    symbols: int = 0
    pointers: int = 0
    prologues: int = 0
    data: int = 0

    @property
    def total(self) -> int:
        return (self.recursion + self.symbols + self.pointers + self.prologues + self.data
                + self.sweep + self.undecodable)


class Region:
    """One executable region and its per-byte tables."""

    __slots__ = ("start", "data", "end", "size", "flags", "origin", "covered")

    def __init__(self, start: int, data: bytes):
        self.start, self.data, self.end = start, bytes(data), start + len(data)
        self.size = bytearray(len(data))  # size of the instruction starting here, or 0
        self.flags = bytearray(len(data))
        self.origin = bytearray(len(data))
        self.covered = bytearray(len(data))

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

    def __init__(self, mode: int, regions: list[Region], branch_targets: frozenset[int],
                 undecodable: list[Undecodable], coverage: Coverage,
                 jump_tables: dict[int, list[int]]):
        self.mode = mode
        self._regions = regions
        self._region_starts = [r.start for r in regions]
        self.starts = array_of_addresses(mode)
        for region in regions:
            self.starts.extend(region.starts())
        self.branch_targets = branch_targets
        self.undecodable = undecodable  # in address order
        self.coverage = coverage
        self.jump_tables = jump_tables  # jmp address -> its entries
        self.instructions = _Instructions(self)

    def _locate(self, address: int) -> tuple[Region, int] | tuple[None, None]:
        i = bisect.bisect_right(self._region_starts, address) - 1
        if i >= 0 and address < self._regions[i].end:
            return self._regions[i], address - self._regions[i].start
        return None, None

    def reached_by_recursion(self, address: int) -> bool:
        """Whether an instruction found by recursive disassembly (from the entry, a
        symbol or a pointer) starts at `address`."""
        region, offset = self._locate(address)
        return region is not None and region.origin[offset] == RECURSION

    def starts_instruction(self, address: int) -> bool:
        region, offset = self._locate(address)
        return region is not None and region.origin[offset] != 0

    def instruction_at(self, address: int) -> Insn | None:
        region, offset = self._locate(address)
        if region is None or not region.origin[offset]:
            return None
        return self._insn(region, offset)

    def _insn(self, region: Region, offset: int) -> Insn:
        code = region.data[offset : offset + region.size[offset]]
        _, size, mnemonic, op_str = decode_one_lite(code, region.start + offset, self.mode)
        return Insn(region.start + offset, size, code, mnemonic, op_str, self.mode)

    def iter_instructions(self, start: int = 0, end: int = 1 << 64) -> Iterator[Insn]:
        """Instructions starting in [start, end), in address order, decoded as they go:
        each run of back-to-back instructions by one linear lite decode."""
        addresses = self.starts[bisect.bisect_left(self.starts, start):
                                bisect.bisect_left(self.starts, end)]
        index = 0
        while index < len(addresses):
            region, first = self._locate(addresses[index])
            stop, index = first + region.size[first], index + 1
            while (index < len(addresses) and stop < len(region.data)
                   and addresses[index] == region.start + stop):
                stop, index = stop + region.size[stop], index + 1
            code = region.data[first:stop]
            for address, size, mnemonic, op_str in decode_all_lite(
                    code, region.start + first, self.mode):
                offset = address - region.start - first
                yield Insn(address, size, code[offset : offset + size], mnemonic, op_str,
                           self.mode)

    def instructions_in(self, start: int, end: int) -> list[Insn]:
        """Instructions starting in [start, end), in address order."""
        return list(self.iter_instructions(start, end))

    def site_candidates(self) -> Iterator[Insn]:
        """The instructions that may be catalogue instructions (catalogue.may_classify),
        in address order: the only ones worth decoding with detail to find sites."""
        for region in self._regions:
            for offset in compress(range(len(region.data)), region.flags):
                if region.origin[offset] and region.flags[offset] & CANDIDATE:
                    yield self._insn(region, offset)

    def ends_path_at(self, address: int) -> bool:
        """Whether an instruction recursion found ends at `address` with no
        fall-through (ret, jmp, ud2...): control never runs on into what follows."""
        region, offset = self._locate(address - 1)
        if region is None:
            return False
        for start in range(offset, max(-1, offset - MAX_INSN_SIZE), -1):
            if (region.origin[start] == RECURSION and start + region.size[start] == offset + 1
                    and region.flags[start] & ENDS):
                return True
        return False

    def back_to_back(self, start: int, end: int) -> list[bytes] | None:
        """The bytes of the instructions of the map that fill [start, end) back to back,
        or None where they do not (a byte no instruction starts at, or one that runs
        past `end`). Read from the tables: nothing is decoded."""
        region, offset = self._locate(start)
        if region is None or end > region.end:
            return None
        stop, found = end - region.start, []
        while offset < stop:
            size = region.size[offset]
            if not size or not region.origin[offset] or offset + size > stop:
                return None
            found.append(region.data[offset : offset + size])
            offset += size
        return found

    def possible_code(self) -> list[tuple[int, int]]:
        """[start, end) of each run of bytes only the sweep decoded (or could not):
        reached by no path from the entry, a symbol or a pointer."""
        runs = []
        for region in self._regions:
            runs += [(region.start + a, region.start + b) for a, b in zero_runs(region.covered)]
        return runs


def array_of_addresses(mode: int) -> array:
    return array("I" if mode == 32 else "Q")


def zero_runs(table: bytearray) -> Iterator[tuple[int, int]]:
    """[start, end) runs of zero bytes."""
    position, size = 0, len(table)
    while position < size:
        start = table.find(0, position)
        if start < 0:
            return
        end = _NONZERO.search(table, start)
        end = size if end is None else end.start()
        yield start, end
        position = end
