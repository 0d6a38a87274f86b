"""keystone and iced-x86 measured against GNU as: how many forms each encodes right, and
how fast. A measurement, not a test (DESIGN.md, "Measuring"); run it with

    .venv/bin/python -m tests.x86.encoder_survey

Two jobs, each tool at the job it can do (iced's Python binding has no text assembler):
- assembling a statement (the patch set's templates and glue): keystone from the text;
  iced re-encodes the instruction decoded from GNU as's bytes, at another address;
- moving displaced instructions from OLD to NEW: keystone re-assembles the decoded text
  at NEW (a relative branch at its target, a RIP-relative operand with its displacement
  recomputed, the rest copied), as emit.py did; iced's BlockEncoder re-encodes the
  decoded block; pvtool's relocate() is iced plus the capstone check.
GNU as assembles every form at OLD and at NEW (`.org`, labels at the targets). Where it
refuses (loop/jecxz out of rel8 reach), a result counts as right when capstone shows it
reaches the same addresses (relocate's check).
"""

import tempfile
import timeit
from pathlib import Path

import iced_x86
from capstone import CS_GRP_BRANCH_RELATIVE
from capstone.x86_const import X86_OP_MEM

from pvtool.x86 import isa
from pvtool.x86.relocate import RelocationError, check_moved, relocate
from tests.x86.gas import gnu_assemble, gnu_window
from tests.x86.test_catalogue import FORMS_32, FORMS_64

OLD, NEAR, FAR = 0x1000, 0x1040, 0x9000  # rel8 reaches 0x1020 from OLD and NEAR, not FAR
TARGETS = (0x1020, 0x3000, 0x8FF0, "inside")  # rel8 / rel32 at OLD, rel8 again from FAR
# How kernels spell the instructions keystone gets wrong, beside the catalogue's forms.
SPELLINGS = {32: ["iret", "pushf", "popf", "push ds", "pop es", "push ss", "lret",
                  "ljmp 0x8:0x12345", "lgdt [0x1000]", "sidt [eax+8]"],
             64: ["iretq", "pushf", "popf", "lgdt [0x1000]", "invlpg [0x1000]", "lretq",
                  "sysretq", "sysexitq"]}  # fmt: skip
BRANCHES = {32: ["jmp t", "jz t", "jne t", "call t", "loop t", "loope t", "jecxz t"],
            64: ["jmp t", "jz t", "jne t", "call t", "loop t", "loopne t", "jecxz t",
                 "jrcxz t"]}  # fmt: skip
RIP_RELATIVE = ["mov rax, qword ptr [rip + t]", "mov eax, dword ptr [rip + t]",
                "lea rax, [rip + t]", "call qword ptr [rip + t]", "jmp qword ptr [rip + t]",
                "cmp dword ptr [rip + t], 5", "cmp byte ptr [rip + t], 1",
                "mov qword ptr [rip + t], 0x12345678", "push qword ptr [rip + t]",
                "inc dword ptr [rip + t]"]  # fmt: skip


class Gas:
    """GNU as in a scratch directory; None where it refuses (an out-of-range rel8)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir

    def bytes_of(self, lines: list[str], mode: int) -> bytes | None:
        try:
            return gnu_assemble(lines, mode, self.workdir)
        except AssertionError:
            return None

    def window_at(self, window: list[str], at: int, target, mode: int) -> bytes | None:
        """The window's bytes when GNU as places it at AT and the label t at TARGET."""
        placed = [] if target == "inside" else [(target, ["t: nop"])]
        try:
            return gnu_window(window, at, mode, self.workdir, placed)
        except AssertionError:
            return None


# ---- the tools


def keystone_move(code: bytes, old: int, new: int, mode: int) -> bytes:
    """Re-assemble the decoded text at NEW, with labels for targets inside the block."""
    insns = list(isa.decode_all(code, old, mode))
    inside = {i.address for i in insns}
    lines = []
    for insn in insns:
        lines.append(f"L{insn.address:x}:")
        text = f"{insn.mnemonic} {insn.op_str}"
        if insn.group(CS_GRP_BRANCH_RELATIVE):
            target = insn.operands[0].imm
            text = f"{insn.mnemonic} {f'L{target:x}' if target in inside else hex(target)}"
        elif "rip" in insn.op_str:
            disp = next(op.mem.disp for op in insn.operands if op.type == X86_OP_MEM)
            moved = disp + old - new  # single-instruction windows only
            text = text.replace(f"rip + {disp:#x}", f"rip + {moved:#x}")
        lines.append(text)
    return isa.assemble("\n".join(lines), new, mode)


def iced_move(code: bytes, old: int, new: int, mode: int) -> bytes:
    block = iced_x86.BlockEncoder(mode)
    block.add_many(list(iced_x86.Decoder(mode, code, ip=old)))
    return block.encode(new)


VERDICTS = ("right", "equivalent", "wrong", "refused")
MOVERS = {"keystone": keystone_move, "iced BlockEncoder": iced_move, "pvtool relocate": relocate}


def verdict(result: bytes | None, oracle: bytes | None, original: bytes, mode: int,
            new: int) -> str:
    """right (GNU as's bytes), equivalent (other bytes capstone reads as the same
    instructions: a redundant 0x66, another prefix order), wrong, or refused."""
    if result is None:
        return "refused"
    if oracle is None:
        try:
            check_moved(original, OLD, result, new, mode)
        except RelocationError:
            return "wrong"
        return "right"
    if result == oracle:
        return "right"
    return "equivalent" if _texts(result, new, mode) == _texts(oracle, new, mode) else "wrong"


def _texts(code: bytes, at: int, mode: int) -> list[str]:
    return [f"{i.mnemonic} {i.op_str}" for i in isa.decode_all(code, at, mode)
            if not isinstance(i, isa.Undecodable)]


def attempt(function, *args) -> bytes | None:
    try:
        return function(*args)
    except (isa.AssemblyError, RelocationError, ValueError):
        return None


# ---- the counts


def moving_forms(gas: Gas):
    """(mode, form, original bytes, oracle bytes at NEW, NEW) for every relocation case."""
    for mode in (32, 64):
        cases = [(text, t) for text in BRANCHES[mode] for t in TARGETS]
        if mode == 64:
            cases += [(text, 0x3000) for text in RIP_RELATIVE]
        for text, target in cases:
            window = [text, "nop", "t: nop"] if target == "inside" else [text]
            original = gas.window_at(window, OLD, target, mode)
            if original is None:
                continue  # not encodable at OLD either
            for new in (NEAR, FAR):
                yield mode, f"{text} ({target})", original, gas.window_at(
                    window, new, target, mode), new


def count_moves(gas: Gas):
    """Every mover on every relocation case: counts by verdict, and what was not right."""
    counts = {name: {} for name in MOVERS}
    wrong = []
    for mode, form, original, oracle, new in moving_forms(gas):
        for name, move in MOVERS.items():
            result = attempt(move, original, OLD, new, mode)
            seen = verdict(result, oracle, original, mode, new)
            counts[name][seen] = counts[name].get(seen, 0) + 1
            if seen != "right":
                wrong.append((name, mode, form, hex(new), seen))
    return counts, wrong


def count_statements(gas: Gas):
    """keystone (raw, and checked with the table) and iced on the catalogue's forms:
    counts by verdict, and what was not right."""
    counts = {"keystone": {}, "keystone + table + check": {}, "iced re-encoding": {}}
    wrong = []
    for mode, forms in ((32, FORMS_32), (64, FORMS_64)):
        for text in [source for source, _ in forms] + SPELLINGS[mode]:
            oracle = gas.bytes_of([text], mode)
            results = {
                "keystone": attempt(isa.assemble, text, FAR, mode),
                "keystone + table + check": attempt(isa.assemble_checked, text, FAR, mode),
                "iced re-encoding": attempt(iced_move, oracle, OLD, FAR, mode),
            }
            for name, result in results.items():
                seen = verdict(result, oracle, oracle, mode, FAR)
                counts[name][seen] = counts[name].get(seen, 0) + 1
                if seen != "right":
                    wrong.append((name, mode, text, seen))
    return counts, wrong


# ---- the speed

# What a patch assembles and moves: branches, pushes, the templates' memory forms.
MIX = ["jmp 0x105000", "call 0x104000", "mov byte ptr [0xc0001000], 1", "push eax",
       "lea eax, [esp + 4]", "movzx eax, word ptr [ebx + 4]", "jne 0x104010",
       "pop eax"]  # fmt: skip


def per_second(function, count: int) -> float:
    runs = timeit.repeat(function, number=1, repeat=5)
    return count / min(runs)


def speeds() -> dict[str, float]:
    batch = MIX * 125  # 1000 statements
    text = "\n".join(batch)
    code = isa.assemble(text, FAR, 32)
    single = [isa.assemble(s, FAR, 32) for s in MIX]
    engine = isa.assembler(32)
    checked = isa.assemble_checked.__wrapped__  # the work itself, not its cache's hits
    return {
        "keystone asm(), one statement a call": per_second(
            lambda: [engine.asm(s, FAR) for s in batch], len(batch)),
        "keystone asm(), 1000 statements in one call": per_second(
            lambda: engine.asm(text, FAR), len(batch)),
        "assemble_checked, one statement a call": per_second(
            lambda: [checked(s, FAR, 32) for s in batch], len(batch)),
        "assemble_checked, 1000 in one call": per_second(
            lambda: checked(text, FAR, 32), len(batch)),
        "iced BlockEncoder, one instruction a block": per_second(
            lambda: [iced_move(c, FAR, OLD, 32) for c in single * 125], len(batch)),
        "iced BlockEncoder, 1000 in one block": per_second(
            lambda: iced_move(code, FAR, OLD, 32), len(batch)),
        "relocate (iced + check), one instruction a call": per_second(
            lambda: [relocate(c, FAR, OLD, 32) for c in single * 125], len(batch)),
        "relocate (iced + check), 1000 in one call": per_second(
            lambda: relocate(code, FAR, OLD, 32), len(batch)),
        "capstone decode with detail (for scale)": per_second(
            lambda: list(isa.decoder(32).disasm(code, FAR)), len(batch)),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        gas = Gas(Path(scratch))
        statements, statement_misses = count_statements(gas)
        moves, move_misses = count_moves(gas)
    for title, counts in (("assembling a statement", statements), ("moving instructions", moves)):
        print(f"== {title}, against GNU as: right / equivalent / wrong / refused")
        for name, seen in counts.items():
            print(f"  {name:28}", *(f"{seen.get(k, 0):4}" for k in VERDICTS))
    print("== not right:")
    for miss in statement_misses + move_misses:
        print("  ", *miss)
    print("== speed, instructions per second")
    for name, rate in speeds().items():
        print(f"  {name:50} {rate:12,.0f}  ({1e6 / rate:6.1f} us each)")


if __name__ == "__main__":
    main()
