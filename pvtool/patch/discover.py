"""Code discovery: which executable bytes are instructions, which are data, and where
control can land.

The patcher rewrites instructions in place, and an in-place rewrite that spans a
location some other code jumps to breaks that code, as does a rewrite of bytes that are
data. So discovery has three duties: find every instruction (privileged ones hide
anywhere), keep data apart from code, and over-approximate the set of places control
can arrive at.

0. Data first: the ranges the caller knows are data (code_space.py: the Multiboot
   header, ELF notes) are never decoded.
1. Recursive disassembly, which decides what is code: from the image entry, then from
   every function symbol, then from every address-taken pointer (below). It follows
   direct jmp/jcc/call/loop/jecxz targets (and far jmp/call offsets: guests use flat
   segments, e.g. the `ljmp 0x8:1f` after lgdt); a path stops at
   ret/retf/iret/jmp/ud2/sysexit/sysret, and at data, and continues after call, int
   and hlt. `jmp [index*4 + table]` is a jump table: its entries are read while they
   point into code, and followed; its body is data.
2. The pointer rule: an aligned pointer-sized word in a data region, or an immediate of
   code found by recursion, that holds an address in bytes no recursion reached starts
   a recursion of its own, which is kept only if everything it reaches decodes as code:
   no undecodable byte, no data, no target outside the code, no instruction that
   straddles code already found; and the root itself must not lie inside an
   instruction of the linear decoding of the unreached bytes before it, from the end
   of the code before them (when that is at most _IN_STEP bytes back). Compilers take
   a function's address for a callback table or a handler; data that happens to hold
   such a word rarely decodes that cleanly. Code so found is code like the rest, and
   its immediates are pointers too.
3. The prologue rule: where no recursion reached, gcc's frame setup `push ebp; mov ebp,
   esp` at a 16-byte boundary (where gcc aligns functions) starts a recursion held to
   the pointer rule's test. A distribution's Linux calls much of its code through
   computed addresses (paravirt ops, static calls, alternatives) with no symbol left.
4. A linear sweep over every executable byte no recursion reached, so nothing goes
   unseen: that is "possible code", reported with its reason, and its catalogue
   instructions are sites the patcher keeps as they are (never rewritten: they may be
   data). capstone stops silently at a byte it cannot decode; here every such run is
   recorded in `undecodable`, and coverage accounts for every byte: entry + symbols +
   pointers + prologues + data + sweep + undecodable == the regions' size.
5. Branch targets, conservatively: every entry point, every direct target and jump-table
   entry found by recursion, plus, when they equal the start of a decoded instruction,
   the direct targets of swept code, every immediate operand, and every aligned
   pointer-sized word of the regions and data regions (a function pointer in .data, a
   callback table in .rodata). A false positive only costs an in-place rewrite (the
   site gets a detour or a trap instead); a false negative would corrupt the guest.
   Pointers at unaligned addresses and computed ones are not seen: the report should
   say a rewrite is in-place so a human can check.

Overlapping instructions (a jump into the middle of another instruction) are kept when
the entry or a symbol leads there: both decodings are real paths, and a privileged
instruction in either is a site.

The cost is linear in the image: grid.py decodes every region once, and recursion and
the sweep walk its per-byte tables (code_map.py).
"""

import bisect
from array import array
from collections.abc import Iterable
from itertools import chain, compress

from pvtool.patch.code_map import (
    DATA,
    DIRECT,
    ENDS,
    FROM_ENTRY,
    FROM_POINTER,
    FROM_PROLOGUE,
    FROM_SYMBOL,
    IMMEDIATE,
    RECURSION,
    SWEEP,
    TABLE,
    CodeMap,
    Coverage,
    Insn,
    Region,
    zero_runs,
)
from pvtool.patch.grid import Grid
from pvtool.x86.isa import MAX_INSN_SIZE, Undecodable, decode_one

__all__ = ["CodeMap", "Coverage", "Insn", "discover"]

_MAX_TABLE_ENTRIES = 4096
# gcc's frame setup, `push ebp; mov ebp, esp` (`push rbp; mov rbp, rsp`), at the 16-byte
# boundary it aligns functions to on x86 (-falign-functions).
_PROLOGUES = {32: bytes.fromhex("55 89e5"), 64: bytes.fromhex("55 4889e5")}
_FUNCTION_ALIGN = 16
# How far back the pointer rule decodes the unreached bytes before a root to see
# whether the root is in step with the code before them: a bound on the cost per root
# (further back, the decoding may well have come through data).
_IN_STEP = 128
# bytes.translate tables: a byte of Region.origin -> 1 if RECURSION, of Region.flags ->
# 1 if IMMEDIATE, else 0.
_RECURSION_ONLY = bytes(int(b == RECURSION) for b in range(256))
_IMMEDIATE_ONLY = bytes(int(bool(b & IMMEDIATE)) for b in range(256))


class _Conflict(Exception):
    """A pointer-rule recursion met something that is not code."""


class _Closure:
    """What one recursion did, so a pointer-rule recursion can be undone."""

    def __init__(self, how: int, strict: bool):
        self.how, self.strict = how, strict
        self.fill = [bytes([how]) * size for size in range(MAX_INSN_SIZE + 1)]
        self.decoded: list[tuple[Region, int, int]] = []
        self.data: list[tuple[Region, int, int]] = []
        self.tables: list[int] = []
        self.targets: list[int] = []


class _Discovery(Grid):
    """Recursion, the pointer rule, jump tables and the sweep over the grid."""

    def __init__(self, regions, data_regions, mode: int):
        super().__init__(regions, data_regions, mode)
        self.targets: set[int] = set()
        self.swept_targets: set[int] = set()  # direct targets of swept code
        self.jump_tables: dict[int, list[int]] = {}
        self.undecodable: list[Undecodable] = []

    def recurse(self, roots: Iterable[int], how: int) -> None:
        """Recursion from the entry (FROM_ENTRY) or the symbols (FROM_SYMBOL)."""
        roots = [a & self.mask for a in roots]
        closure = _Closure(how, strict=False)
        self._explore(roots, closure)
        self.targets.update(roots, closure.targets)

    def recurse_from_pointers(self) -> None:
        """The pointer rule (module docstring, 2.)."""
        self._prove(self._data_words(), FROM_POINTER)

    def recurse_from_prologues(self) -> None:
        """The prologue rule (module docstring, 3.)."""
        prologue, roots = _PROLOGUES[self.mode], []
        for region in self.regions:
            for start, end in list(zero_runs(region.covered)):
                at = region.data.find(prologue, start, end)
                while at >= 0:
                    if (region.start + at) % _FUNCTION_ALIGN == 0:
                        roots.append(region.start + at)
                    at = region.data.find(prologue, at + 1, end)
        self._prove(roots, FROM_PROLOGUE)

    def _prove(self, roots: Iterable[int], how: int) -> None:
        """A strict recursion from each root, to a fixed point: code it proves has
        immediates of its own, which the pointer rule follows."""
        proven = self._proven_immediates()
        roots = set(roots)
        while roots or proven:
            roots.update(chain.from_iterable(map(self.immediates.__getitem__, proven)))
            proven = []
            for root in sorted(roots):
                proven += self._pointer(root, how)
            roots, how = set(), FROM_POINTER

    def _proven_immediates(self) -> list[int]:
        """Addresses of the instructions recursion found that hold immediates: where
        the origin table says RECURSION and the flags say IMMEDIATE, by one AND of the
        two tables as integers rather than a lookup per immediate."""
        found = []
        for region in self.regions:
            recursion = int.from_bytes(region.origin.translate(_RECURSION_ONLY), "little")
            immediate = int.from_bytes(region.flags.translate(_IMMEDIATE_ONLY), "little")
            both = (recursion & immediate).to_bytes(len(region.data), "little")
            found += compress(range(region.start, region.end), both)
        return found

    def _pointer(self, root: int, how: int) -> list[int]:
        """Recursion from one pointer, kept or undone; the addresses it proved that hold
        immediates."""
        region = self.region_of(root)
        if region is None or region.covered[root - region.start] \
                or self._splits_an_instruction(region, root - region.start):
            return []
        closure = _Closure(how, strict=True)
        try:
            self._explore([root], closure)
        except _Conflict:
            self._undo(closure)
            return []
        self.targets.add(root)
        self.targets.update(closure.targets)
        return [region.start + offset for region, offset, _ in closure.decoded
                if region.flags[offset] & IMMEDIATE]

    def _splits_an_instruction(self, region: Region, offset: int) -> bool:
        """Whether OFFSET lies inside an instruction of the linear decoding of the
        unreached bytes before it, from the end of the code before them (judged when
        that is at most _IN_STEP bytes back). A word of data that names the byte after
        an opcode otherwise proves an instruction that is not there: Linux's `jmp
        short` eb 9c, in a block only a patched static branch reaches, became a pushf
        that a word of .rodata pointed at."""
        window = region.covered[max(0, offset - _IN_STEP) : offset]
        known = len(window.rstrip(b"\0"))
        if not known and offset > _IN_STEP:
            return False
        at = offset - len(window) + known
        while at < offset:
            at += self.size_at(region, at, len(region.data)) or 1
        return at != offset

    def _undo(self, closure: _Closure) -> None:
        for region, offset, size in closure.decoded:
            region.origin[offset] = 0
            region.covered[offset : offset + size] = bytes(size)
        for region, lo, hi in closure.data:
            region.covered[lo:hi] = bytes(hi - lo)
        for address in closure.tables:
            del self.jump_tables[address]

    def _explore(self, worklist: list[int], closure: _Closure) -> None:
        worklist = list(worklist)
        while worklist:
            self._path(worklist.pop(), worklist, closure)

    def _path(self, address: int, worklist: list[int], closure: _Closure) -> None:
        """Decode one path from `address` until it ends or meets decoded code. Under
        the pointer rule, raise _Conflict where it is not code. (The hot loop of
        discovery: the tables are read inline, a region's at a time.)"""
        strict, fill, decoded = closure.strict, closure.fill, closure.decoded
        region = self.region_of(address)
        while region is not None:
            origin, covered, flags, sizes = region.origin, region.covered, region.flags, \
                region.size
            offset, length = address - region.start, len(region.data)
            while offset < length:
                if origin[offset] == RECURSION:
                    return
                size = sizes[offset] or self.size_at(region, offset, length)
                if not size or offset + size > length:
                    return _stop(closure)
                if covered.count(0, offset, offset + size) == size:
                    covered[offset : offset + size] = fill[size]
                elif strict or covered.find(DATA, offset, offset + size) >= 0:
                    return _stop(closure)
                else:  # overlapping decodings: a byte keeps the first way it was reached
                    span = covered[offset : offset + size]
                    covered[offset : offset + size] = bytes(b or closure.how for b in span)
                origin[offset] = RECURSION
                if strict:
                    decoded.append((region, offset, size))
                flag = flags[offset]
                if flag & (DIRECT | TABLE):
                    targets = self.flow(region, region.start + offset, flag, closure)
                    closure.targets += targets
                    worklist += targets
                if flag & ENDS:
                    return
                offset += size
            address = region.start + offset
            region = self.region_of(address)
        _stop(closure)

    def flow(self, region: Region, address: int, flags: int,
             closure: _Closure | None = None) -> list[int]:
        """The direct targets (and jump-table entries) of the instruction at `address`."""
        if flags & TABLE:
            return self.jump_table(region, address, closure)
        return [self.direct[address]] if flags & DIRECT else []

    def jump_table(self, region: Region, address: int, closure: _Closure | None) -> list[int]:
        """Entries of `jmp [index*wordsize + table]` while they point into code. Found
        by recursion, the table's body is data."""
        offset = address - region.start
        op = decode_one(region.data[offset : offset + region.size[offset]], address,
                        self.mode).operands[0]
        mem = op.mem
        if mem.base or not mem.index or mem.scale != self.word or op.size != self.word:
            return []
        entries = []
        table = mem.disp & self.mask
        while len(entries) < _MAX_TABLE_ENTRIES:
            value = self.read_word(table + len(entries) * self.word)
            if value is None or self.region_of(value) is None:
                break
            entries.append(value)
        if entries and closure is not None:
            self.jump_tables[address] = entries
            closure.tables.append(address)
            self._table_body(table, len(entries) * self.word, closure)
        return entries

    def _table_body(self, start: int, size: int, closure: _Closure) -> None:
        """Mark a jump table's bytes in the code as data where nothing claimed them."""
        region = self.region_of(start)
        if region is None:
            return
        lo, hi = start - region.start, min(start + size, region.end) - region.start
        span = region.covered[lo:hi]
        if span.count(0) == len(span):
            region.covered[lo:hi] = bytes([DATA]) * len(span)
            closure.data.append((region, lo, hi))

    def read_word(self, address: int) -> int | None:
        for start, data in self.readable:
            if start <= address and address + self.word <= start + len(data):
                offset = address - start
                return int.from_bytes(data[offset : offset + self.word], "little")
        return None

    # ---- linear sweep

    def sweep(self) -> int:
        """Decode every byte no recursion reached; return the bytes swept into
        instructions.

        A linear sweep through data falls out of step with the code after it (a jump
        table's words decode as instructions that run into the next function). So each
        gap is cut at its anchors, the possible targets (pointer-like words and
        immediates) that fall inside it, and every piece is decoded on its own.
        """
        anchors = sorted(self.candidates)
        swept = 0
        for region in self.regions:
            for start, end in list(zero_runs(region.covered)):
                for piece_start, piece_end in _cut(start, end, region.start, anchors):
                    swept += self._sweep_piece(region, piece_start, piece_end)
        return swept

    def _sweep_piece(self, region: Region, start: int, end: int) -> int:
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
            region.origin[offset] = SWEEP
            if flags[offset]:
                address = region.start + offset
                self.swept_targets.update(self.flow(region, address, flags[offset]))
            swept += size
            offset += size
        if bad is not None:
            self._undecodable(region, bad, end)
        return swept

    def _undecodable(self, region: Region, start: int, end: int) -> None:
        self.undecodable.append(Undecodable(region.start + start, region.data[start:end]))

    # ---- possible function pointers

    def _data_words(self, readable=None) -> list[int]:
        """Every aligned pointer-sized word of `readable` (the data regions) that points
        into a region."""
        found = []
        for start, data in self.data_regions if readable is None else readable:
            first = -start % self.word  # the first aligned address
            count = max(0, len(data) - first) // self.word
            words = array("I" if self.word == 4 else "Q")
            words.frombytes(data[first : first + count * self.word])
            inside = {w for w in words if self.lowest <= w < self.highest}
            found += [w for w in inside if self.region_of(w)]
        return found

    def collect_data_words(self) -> None:
        """Every aligned pointer-sized word of the code and data regions is a possible
        target."""
        self.candidates.update(self._data_words(self.readable))

    def code_map(self, swept: int) -> CodeMap:
        def count(value: int) -> int:
            return sum(r.covered.count(value) for r in self.regions)

        def starts_instruction(address: int) -> bool:
            region = self.region_of(address)
            return region is not None and region.origin[address - region.start] != 0

        bad = sum(run.size for run in self.undecodable)
        coverage = Coverage(recursion=count(FROM_ENTRY), sweep=swept, undecodable=bad,
                            symbols=count(FROM_SYMBOL), pointers=count(FROM_POINTER),
                            prologues=count(FROM_PROLOGUE), data=count(DATA))
        maybe = self.candidates | self.swept_targets
        targets = frozenset(self.targets | {a for a in maybe if starts_instruction(a)})
        return CodeMap(self.mode, self.regions, targets,
                       sorted(self.undecodable, key=lambda run: run.address), coverage,
                       self.jump_tables)


def _stop(closure: _Closure) -> None:
    """A path that cannot go on: its end under recursion, a conflict under the pointer
    rule."""
    if closure.strict:
        raise _Conflict

def _cut(start: int, end: int, base: int, anchors: list[int]):
    """[start, end) (offsets from `base`) cut at every anchor address inside it."""
    lo = bisect.bisect_right(anchors, base + start)
    hi = bisect.bisect_left(anchors, base + end)
    cuts = [start] + [a - base for a in anchors[lo:hi]] + [end]
    return list(zip(cuts, cuts[1:], strict=False))

def discover(
    regions: list[tuple[int, bytes]],
    entry_points: Iterable[int],
    *,
    mode: int = 32,
    data_regions: list[tuple[int, bytes]] = (),
    symbols: Iterable[int] = (),
    data_in_code: Iterable[tuple[int, int]] = (),
) -> CodeMap:
    """Find the instructions and branch targets of the executable `regions`
    ((address, bytes) pairs), starting from `entry_points` and then the function
    `symbols`; `data_regions` are the non-executable bytes the image maps, read for jump
    tables and function pointers; `data_in_code` ([start, end) ranges) are data inside
    the regions."""
    work = _Discovery(regions, data_regions, mode)
    work.mark_data(data_in_code)
    work.decode_regions()
    work.recurse(entry_points, FROM_ENTRY)
    work.recurse(symbols, FROM_SYMBOL)
    if work.regions:
        work.recurse_from_pointers()
        work.recurse_from_prologues()
        work.collect_data_words()
    swept = work.sweep()
    return work.code_map(swept)
