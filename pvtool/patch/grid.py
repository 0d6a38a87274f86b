"""The linear sweep's grid: every executable region decoded once, up front, by
capstone's lite mode (a chunk per call, isa.py), into the per-byte tables of
code_map.Region: the size of the instruction starting at each byte and what it is to
discovery (a branch and its direct target, a path end, a jump through a table, a
catalogue candidate, an operand pointing into the code). Recursion and the sweep
(discover.py) walk these tables, and decode afresh (`size_at`) only where they start
off this grid: the cost stays linear in the image.
"""

import bisect
import re
from collections.abc import Iterable

from capstone import x86_const as X

from pvtool.patch.code_map import (
    BAD,
    CANDIDATE,
    DATA,
    DIRECT,
    ENDS,
    IMMEDIATE,
    TABLE,
    Region,
)
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
_FLOW = _BRANCHES | _PATH_ENDS
# A RIP-relative operand as capstone prints it, and how many int32 entries of a
# relative jump table it may name are read (as discover.py's absolute tables).
_RIP_OPERAND = re.compile(r"\[rip(?: ([+-]) (0x[0-9a-f]+|\d+))?\]")
_MAX_RELATIVE_ENTRIES = 4096
# What _note records for a near branch with no prefix whose operand is its target (the
# bulk of a kernel's branches), worked out once per mnemonic: a target prints as bare
# hex, which may_classify's operand test (register names) cannot match.
_RELATIVE = {name: (ENDS if name in _PATH_ENDS else 0) | DIRECT
             | (CANDIDATE if may_classify(name, "0x0") else 0)
             for name in _BRANCHES - _FAR}


class Grid:
    """The executable regions with their tables, the data regions, and what decoding
    found: direct branch targets, operands that point into the code, possible pointers."""

    def __init__(self, regions, data_regions, mode: int):
        self.mode = mode
        self.mask = (1 << mode) - 1
        self.word = mode // 8
        self.regions = sorted((Region(a, d) for a, d in regions if d), key=lambda r: r.start)
        _check_disjoint(self.regions)
        self.starts = [r.start for r in self.regions]
        self.data_regions = [(a, bytes(d)) for a, d in data_regions]
        self.readable = sorted([(r.start, r.data) for r in self.regions] + self.data_regions)
        self.direct: dict[int, int] = {}  # branch address -> its direct target
        self.immediates: dict[int, tuple[int, ...]] = {}  # address -> those into a region
        self.lowest = self.regions[0].start if self.regions else 0
        self.highest = self.regions[-1].end if self.regions else 0
        self.long_hex = _hex_literals(self.lowest, self.highest, self.mask)
        self.candidates: set[int] = set()  # possible pointers, kept if an insn starts there

    def region_of(self, address: int) -> Region | None:
        i = bisect.bisect_right(self.starts, address) - 1
        if i >= 0 and address < self.regions[i].end:
            return self.regions[i]
        return None

    def mark_data(self, ranges: Iterable[tuple[int, int]]) -> None:
        for start, end in ranges:
            for region in self.regions:
                lo, hi = max(start, region.start), min(end, region.end)
                if lo < hi:
                    region.covered[lo - region.start : hi - region.start] = bytes([DATA]) * (
                        hi - lo)

    # ---- decoding into the tables

    def decode_regions(self) -> None:
        """The linear sweep's grid: every region decoded once, in lite mode."""
        long_hex, direct, mask = self.long_hex, self.direct, self.mask
        for region in self.regions:
            base, sizes, flags = region.start, region.size, region.flags
            for item in decode_all_lite(region.data, base, self.mode):
                if item.__class__ is Undecodable:
                    offset = item.address - base
                    region.flags[offset : offset + item.size] = bytes([BAD]) * item.size
                    continue
                address, size, mnemonic, op_str = item
                sizes[address - base] = size
                relative = _RELATIVE.get(mnemonic)
                if relative is not None and op_str.startswith("0x"):  # _note's result
                    direct[address] = int(op_str, 16) & mask
                    flags[address - base] = relative
                elif mnemonic in _FLOW or " " in mnemonic or may_classify(mnemonic, op_str):
                    self._note(region, address, size, mnemonic, op_str)
                if "0x" in op_str and (literals := long_hex(op_str)):
                    self._immediates(region, address, literals)
                if "rip" in op_str:
                    self._rip_relative(region, address, size, op_str)

    def _immediates(self, region: Region, address: int, literals: list[str]) -> None:
        """Every immediate (and displacement) of `literals` (capstone's hex text long
        enough to be one) that points into a region: a possible target, and under the
        pointer rule a possible start of code."""
        values = [v for v in (int(text, 16) & self.mask for text in literals)
                  if self.lowest <= v < self.highest]
        if values:
            self.immediates[address] = tuple(values)
            self.candidates.update(values)
            region.flags[address - region.start] |= IMMEDIATE

    def _rip_relative(self, region: Region, address: int, size: int, op_str: str) -> None:
        """A 64-bit RIP-relative operand (capstone prints `[rip + 0x1f]`, the
        displacement from the next instruction) names the absolute address after it: a
        possible target like any immediate, and, when it points at words of a table
        gcc's -fPIC switch uses (`lea rdx, [rip + T]; movsxd rax, [rdx + rdi*4]; add rax,
        rdx; jmp rax`), every T + int32 entry that lands in a region is one too."""
        found = _RIP_OPERAND.search(op_str)
        if found is None:
            return
        sign, disp = found.groups()
        disp = int(disp, 0) if disp else 0
        target = (address + size + (-disp if sign == "-" else disp)) & self.mask
        values = [target, *self._relative_table(target)]
        values = [v for v in values if self.lowest <= v < self.highest and self.region_of(v)]
        if values:
            self.immediates[address] = (*self.immediates.get(address, ()), *values)
            self.candidates.update(values)
            region.flags[address - region.start] |= IMMEDIATE

    def _relative_table(self, table: int) -> list[int]:
        """The code addresses a table of int32 offsets from TABLE names, read while each
        entry lands inside a region (at most _MAX_RELATIVE_ENTRIES)."""
        entries = []
        for start, data in self.readable:
            if not start <= table < start + len(data):
                continue
            offset = table - start
            while len(entries) < _MAX_RELATIVE_ENTRIES and offset + 4 <= len(data):
                value = (table + int.from_bytes(data[offset:offset + 4], "little",
                                                signed=True)) & self.mask
                if value == table or self.region_of(value) is None:
                    break
                entries.append(value)
                offset += 4
            break
        return entries

    def _note(self, region: Region, address: int, size: int, mnemonic: str,
              op_str: str) -> None:
        """Record what discovery needs of a branch, path end or catalogue candidate.
        capstone prints prefixes into the mnemonic ("notrack jmp", "repz ret")."""
        offset = address - region.start
        name = mnemonic.rpartition(" ")[2]
        flags = 0
        if name in _BRANCHES:
            flags = self._branch(address, name, op_str, region.data[offset : offset + size])
        elif name in _PATH_ENDS:
            flags = ENDS
        if may_classify(mnemonic, op_str):
            flags |= CANDIDATE
        region.flags[offset] = flags

    def _branch(self, address: int, name: str, op_str: str, code: bytes) -> int:
        if name in _FAR:  # the offset follows the selector; rare, so decode with detail
            ops = decode_one(code, address, self.mode).operands
            if ops and ops[-1].type == X.X86_OP_IMM:
                self.direct[address] = ops[-1].imm & self.mask
        elif op_str.startswith("0x"):  # a relative branch prints its absolute target
            self.direct[address] = int(op_str, 16) & self.mask
        flags = (ENDS if name in _PATH_ENDS else 0) | (DIRECT if address in self.direct else 0)
        return flags | (TABLE if name == "jmp" and "[" in op_str else 0)

    def size_at(self, region: Region, offset: int, limit: int) -> int:
        """The size of the instruction at `offset` if it ends by `limit`, else 0."""
        size = region.size[offset]
        if not size and not region.flags[offset] & BAD:
            address = region.start + offset
            found = decode_one_lite(region.data[offset : offset + MAX_INSN_SIZE], address,
                                    self.mode)
            if found is None:
                region.flags[offset] = BAD
                return 0
            size = region.size[offset] = found[1]
            self._note(region, *found)
            if literals := self.long_hex(found[3]):
                self._immediates(region, address, literals)
            if "rip" in found[3]:
                self._rip_relative(region, address, size, found[3])
        return size if offset + size <= limit else 0

    # ---- recursion


def _hex_literals(lowest: int, highest: int, mask: int):
    """findall of the hex literals in capstone's operand text long enough to be an
    address in [lowest, highest), as is or negated (capstone prints `-0x10`)."""
    shortest = min(len(f"{lowest:x}"), len(f"{-(highest - 1) & mask:x}"))
    return re.compile(rf"-?0x[0-9a-f]{{{shortest},}}").findall


def _check_disjoint(regions: list[Region]) -> None:
    for before, after in zip(regions, regions[1:], strict=False):
        if after.start < before.end:
            raise ValueError(f"executable regions overlap at {after.start:#x}")
