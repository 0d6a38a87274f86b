"""Verification of a patched image, from its bytes (what will be written), before it
is renamed into place:
- every byte outside the planned ranges equals the original;
- every catalogue instruction left in the original code is a kept or trap site,
  every trap site is an int3 in the table, and every in-place site holds its replacement;
- every detour jump lands on its stub, every stub holds the code emitted for it and
  ends by jumping back to the instruction after its window.
"""

from pvtool.errors import PatchError
from pvtool.image.elf import ElfImage
from pvtool.patch.discover import CodeMap
from pvtool.patch.emit import NOP, Emitted
from pvtool.patch.plan import Placement, Plan
from pvtool.x86.catalogue import classify
from pvtool.x86.isa import decode_one

INT3 = 0xCC


def verify(original: ElfImage, patched: ElfImage, code: CodeMap, plans: list[Plan],
           emitted: Emitted) -> list[str]:
    """The checks that passed, by name; PatchError names the first that failed."""
    _unchanged_outside_plans(original, patched, plans)
    _no_unrecorded_sites(patched, code, plans)
    _detours_round_trip(patched, emitted)
    return ["bytes outside the sites unchanged", "no unrecorded privileged instruction",
            "every detour enters its stub and returns after its window"]


def _unchanged_outside_plans(original: ElfImage, patched: ElfImage, plans: list[Plan]) -> None:
    changed = sorted((p.start, p.end) for p in plans if p.placement is not Placement.KEPT)
    # The writer rewrites the ELF header to point at its new tables; ld's default
    # layout maps that header in the first PT_LOAD, so its bytes may differ.
    header_size = original.elf_class.ehdr.unpack(original.data).ehsize
    for seg in original.segments:
        before = original.data[seg.offset:seg.offset + seg.filesz]
        after = patched.read_virtual(seg.vaddr, seg.filesz)
        for offset in _differences(before, after):
            address = seg.vaddr + offset
            if seg.offset + offset < header_size:
                continue
            if not any(start <= address < end for start, end in changed):
                raise PatchError(f"verification: byte at {address:#x} changed outside any site")


def _differences(a: bytes, b: bytes):
    if a == b:
        return
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x != y:
            yield i


def _no_unrecorded_sites(patched: ElfImage, code: CodeMap, plans: list[Plan]) -> None:
    touched = {(p.start, p.end) for p in plans if p.placement is not Placement.KEPT}
    kept = {s.address for p in plans if p.placement is Placement.KEPT for s in p.sites}
    traps = {p.start for p in plans if p.placement is Placement.TRAP}
    for insn in code.instructions_in(0, 1 << 32):
        if any(start <= insn.address < end for start, end in touched):
            continue
        now = decode_one(patched.read_virtual(insn.address, insn.size), insn.address,
                         code.mode)
        if now is not None and classify(now) is not None and insn.address not in kept:
            raise PatchError(f"verification: {now.mnemonic} {now.op_str} at "
                             f"{insn.address:#x} is privileged and not recorded")
    for address in traps:
        if patched.read_virtual(address, 1)[0] != INT3:
            raise PatchError(f"verification: trap site {address:#x} is not an int3")
    # An in-place range is skipped above: it must hold exactly its replacement.
    for plan in plans:
        size = plan.end - plan.start
        if (plan.placement is Placement.IN_PLACE
                and patched.read_virtual(plan.start, size) != plan.code.ljust(size, NOP)):
            raise PatchError(f"verification: in-place site {plan.start:#x} does not hold "
                             "its replacement")


def _detours_round_trip(patched: ElfImage, emitted: Emitted) -> None:
    for plan, stub_address, stub in emitted.stubs:
        jump = decode_one(patched.read_virtual(plan.start, 5), plan.start, patched.bits)
        if jump is None or jump.mnemonic != "jmp" or jump.operands[0].imm != stub_address:
            raise PatchError(f"verification: {plan.start:#x} does not jump to its stub")
        back = decode_one(patched.read_virtual(stub_address + len(stub) - 5, 5),
                          stub_address + len(stub) - 5, patched.bits)
        if back is None or back.mnemonic != "jmp" or back.operands[0].imm != plan.end:
            raise PatchError(f"verification: the stub at {stub_address:#x} does not return "
                             f"to {plan.end:#x}")
        if patched.read_virtual(stub_address, len(stub)) != stub:
            raise PatchError(f"verification: the stub at {stub_address:#x} is not the code "
                             "emitted for it")
