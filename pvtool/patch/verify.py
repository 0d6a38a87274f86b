"""Verification of a patched image, from its bytes (what will be written), before it
is renamed into place:
- every byte outside the planned ranges equals the original;
- no instruction of the original code that the rewrites cut into decodes as a catalogue
  instruction, every trap site is an int3 in the table, and every in-place site holds
  its replacement;
- every detour jump lands on its stub, every stub holds the code emitted for it and
  ends by jumping back to the instruction after its window.

Nothing is decoded twice that need not be, which keeps verification linear and
lean on a kernel of millions of instructions. The first check proves every byte
outside the changed ranges is the original's, and an instruction decodes from its bytes
alone, so an instruction lying wholly outside them is the one discovery decoded: the
code map's site candidates (the instructions catalogue.may_classify does not rule out)
are all that can be catalogue instructions there, and only they are classified. Only
an instruction that starts before a changed range and ends inside it has other bytes
now, and it is decoded again.
"""

from bisect import bisect_left, bisect_right

from pvtool.errors import PatchError
from pvtool.image.elf import ElfImage
from pvtool.patch.byte_changes import differing_spans
from pvtool.patch.discover import CodeMap
from pvtool.patch.emit import NOP, Emitted
from pvtool.patch.plan import Placement, Plan, changed_ranges
from pvtool.x86.catalogue import classify
from pvtool.x86.isa import MAX_INSN_SIZE, decode_one

INT3 = 0xCC


def verify(original: ElfImage, patched: ElfImage, code: CodeMap, plans: list[Plan],
           emitted: Emitted) -> list[str]:
    """The checks that passed, by name; PatchError names the first that failed."""
    changed = changed_ranges(plans)
    _unchanged_outside_plans(original, patched, changed)
    _no_unrecorded_sites(patched, code, plans, changed)
    _planned_bytes_in_place(patched, plans)
    _detours_round_trip(patched, emitted)
    return ["bytes outside the sites unchanged", "no unrecorded privileged instruction",
            "every detour enters its stub and returns after its window"]


def _unchanged_outside_plans(original: ElfImage, patched: ElfImage,
                             changed: list[tuple[int, int]]) -> None:
    # The writer rewrites the ELF header to point at its new tables; ld's default
    # layout maps that header in the first PT_LOAD, so its bytes may differ.
    header_size = original.elf_class.ehdr.unpack(original.data).ehsize
    starts = [start for start, _ in changed]
    for seg in original.segments:
        before = original.data[seg.offset:seg.offset + seg.filesz]
        after = patched.read_virtual(seg.vaddr, seg.filesz)
        for lo, hi in differing_spans(before, after):
            lo = max(lo, header_size - seg.offset)
            address = _first_outside(seg.vaddr + lo, seg.vaddr + hi, changed, starts)
            if address is not None:
                raise PatchError(f"verification: byte at {address:#x} changed outside any site")


def _first_outside(lo: int, hi: int, changed: list[tuple[int, int]],
                   starts: list[int]) -> int | None:
    """The first address of [lo, hi) that no changed range holds, or None."""
    while lo < hi:
        index = bisect_right(starts, lo) - 1
        if index < 0 or changed[index][1] <= lo:
            return lo
        lo = changed[index][1]
    return None


def _touches(lo: int, hi: int, changed: list[tuple[int, int]], starts: list[int]) -> bool:
    """Whether [lo, hi) shares a byte with a changed range."""
    index = bisect_left(starts, hi) - 1
    return index >= 0 and changed[index][1] > lo


def _no_unrecorded_sites(patched: ElfImage, code: CodeMap, plans: list[Plan],
                         changed: list[tuple[int, int]]) -> None:
    """Every catalogue instruction left outside the changed ranges is a kept site."""
    kept = {s.address for p in plans if p.placement is Placement.KEPT for s in p.sites}
    starts = [start for start, _ in changed]
    for insn in code.site_candidates():
        if (insn.address not in kept and not _touches(insn.address, insn.end, changed, starts)
                and classify(insn.cs) is not None):
            _unrecorded(insn)
    for start, _ in changed:  # instructions cut into: their bytes changed
        for insn in code.instructions_in(start - MAX_INSN_SIZE + 1, start):
            if insn.end <= start:
                continue
            now = decode_one(patched.read_virtual(insn.address, insn.size), insn.address,
                             code.mode)
            if now is not None and classify(now) is not None:
                _unrecorded(now)


def _unrecorded(insn) -> None:
    raise PatchError(f"verification: {insn.mnemonic} {insn.op_str} at {insn.address:#x} "
                     "is privileged and not recorded")


def _planned_bytes_in_place(patched: ElfImage, plans: list[Plan]) -> None:
    for plan in plans:
        size = plan.end - plan.start
        if (plan.placement is Placement.TRAP
                and patched.read_virtual(plan.start, 1)[0] != INT3):
            raise PatchError(f"verification: trap site {plan.start:#x} is not an int3")
        if (plan.placement is Placement.IN_PLACE
                and patched.read_virtual(plan.start, size) != plan.code.ljust(size, NOP)):
            raise PatchError(f"verification: in-place site {plan.start:#x} does not hold "
                             "its replacement")


def _detours_round_trip(patched: ElfImage, emitted: Emitted) -> None:
    mask = (1 << patched.bits) - 1  # capstone gives a 64-bit target as a signed number
    for plan, stub_address, stub in emitted.stubs:
        jump = decode_one(patched.read_virtual(plan.start, 5), plan.start, patched.bits)
        if jump is None or jump.mnemonic != "jmp" or jump.operands[0].imm & mask != stub_address:
            raise PatchError(f"verification: {plan.start:#x} does not jump to its stub")
        back = decode_one(patched.read_virtual(stub_address + len(stub) - 5, 5),
                          stub_address + len(stub) - 5, patched.bits)
        if back is None or back.mnemonic != "jmp" or back.operands[0].imm & mask != plan.end:
            raise PatchError(f"verification: the stub at {stub_address:#x} does not return "
                             f"to {plan.end:#x}")
        if patched.read_virtual(stub_address, len(stub)) != stub:
            raise PatchError(f"verification: the stub at {stub_address:#x} is not the code "
                             "emitted for it")
