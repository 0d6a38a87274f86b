"""Moving instructions to a new address (x86/relocate.py), in both modes, against GNU as:
the moved code is what GNU as assembles at the new address, the addresses it names read
back with capstone are the labels' own, Unicorn runs the hop of a rel8-only branch, and
every run of a real kernel's instructions moves; a wrong moved encoding is refused."""

import re

import pytest
import unicorn
from capstone import CS_GRP_BRANCH_RELATIVE
from capstone import x86_const as X
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from hypothesis import given, settings
from hypothesis import strategies as st

from pvtool.errors import PatchError
from pvtool.x86 import isa
from pvtool.x86.relocate import RelocationError, check_moved, relocate
from tests.oracles import guest_path
from tests.x86.gas import gnu_window

OLD, NEAR, FAR = 0x1000, 0x1020, 0x9000
# Where the block's labels are: rel8 reaches near_target from OLD and NEAR but not from
# FAR, and close_to_far only from FAR; far_target and data take rel32 from everywhere.
LABELS = {"near_target": 0xFC0, "far_target": 0x3000, "data": 0x3100, "close_to_far": 0x8FF0}
PLACED = [(at, [f"{name}: nop"]) for name, at in LABELS.items()]
PADDING = ".byte 0x8d, 0xb4, 0x26, 0, 0, 0, 0"  # GCC's `lea esi, [esi+eiz*1+0]` filler
BRANCHES_OUT = ["jz near_target", "jmp far_target", "call far_target", "jmp close_to_far"]
BLOCKS = {
    32: [*BRANCHES_OUT, "jne inside", "mov eax, [ebx+4]", PADDING, "inside: out dx, al",
         "lgdt [eax]", "jecxz inside", "loop inside"],
    64: [*BRANCHES_OUT, "jne inside", "mov rax, qword ptr [rip + data]",
         "lea rsi, [rip + data]", "call qword ptr [rip + data]",
         "cmp dword ptr [rip + data], 5", "mov qword ptr [rip + data], 0x12345678",
         "inside: mov eax, [rbx+4]", "jrcxz inside", "loop inside", "jecxz inside",
         "lgdt [rax]"],
}  # fmt: skip


def assembled_at(block: list[str], at: int, mode: int, tmp_path) -> bytes:
    """The block's bytes as GNU as places it at AT, the labels where LABELS says."""
    return gnu_window(block, at, mode, tmp_path, PLACED)


@pytest.mark.parametrize("new", [NEAR, FAR])
@pytest.mark.parametrize("mode", [32, 64])
def test_moved_code_is_what_gnu_as_assembles_at_the_new_address(mode, new, tmp_path):
    original = assembled_at(BLOCKS[mode], OLD, mode, tmp_path)
    expected = assembled_at(BLOCKS[mode], new, mode, tmp_path)
    assert original != expected  # the move must change something to prove anything
    assert relocate(original, OLD, new, mode).hex() == expected.hex()


def named_addresses(code: bytes, at: int, mode: int) -> list[int]:
    """Every branch target and RIP-relative address of the code, as capstone reads it."""
    named = []
    for insn in isa.decode_all(code, at, mode):
        for op in insn.operands:
            if op.type == X.X86_OP_IMM and insn.group(CS_GRP_BRANCH_RELATIVE):
                named.append(op.imm)
            elif op.type == X.X86_OP_MEM and op.mem.base == X.X86_REG_RIP:
                named.append(insn.address + insn.size + op.mem.disp)
    return named


@pytest.mark.parametrize("mode", [32, 64])
def test_branch_targets_and_rip_relative_addresses_stay_the_labels(mode, tmp_path):
    outward = [line for line in BLOCKS[mode] if "inside" not in line]
    moved = relocate(assembled_at(outward, OLD, mode, tmp_path), OLD, FAR, mode)
    wanted = [at for line in outward for name, at in LABELS.items()
              if re.search(rf"\b{name}\b", line)]  # fmt: skip
    assert named_addresses(moved, FAR, mode) == wanted


def run_to(code: bytes, at: int, mode: int, counter: int) -> int:
    """Where control is after two instructions of CODE from AT with (e/r)cx = COUNTER."""
    uc_mode, cx, pc = {32: (unicorn.UC_MODE_32, unicorn.x86_const.UC_X86_REG_ECX,
                            unicorn.x86_const.UC_X86_REG_EIP),
                       64: (unicorn.UC_MODE_64, unicorn.x86_const.UC_X86_REG_RCX,
                            unicorn.x86_const.UC_X86_REG_RIP)}[mode]  # fmt: skip
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, uc_mode)
    uc.mem_map(0, 0x10000)
    uc.mem_write(at, code)
    uc.reg_write(cx, counter)
    uc.emu_start(at, 0, count=2)
    return uc.reg_read(pc)


@pytest.mark.parametrize(("mode", "branch", "taken", "not_taken"), [
    (32, "loop", 2, 1), (32, "jecxz", 0, 5), (64, "loop", 2, 1), (64, "jrcxz", 0, 5),
    (64, "jecxz", 0, 5)])  # fmt: skip
def test_a_rel8_only_branch_out_of_reach_hops_over_a_near_jump(mode, branch, taken, not_taken,
                                                               tmp_path):
    target = LABELS["near_target"]
    original = assembled_at([f"{branch} near_target"], OLD, mode, tmp_path)
    moved = relocate(original, OLD, FAR, mode)
    assert len(moved) > len(original)  # GNU as itself refuses the rel8 form at FAR
    assert run_to(moved, FAR, mode, taken) == target
    assert run_to(moved, FAR, mode, not_taken) == FAR + len(moved)


def test_instructions_that_mean_the_same_anywhere_come_back_byte_for_byte(tmp_path):
    lines = [PADDING, ".byte 0x66, 0x90", ".byte 0x2e, 0x8d, 0x74, 0x26, 0x00",
             ".byte 0xf3, 0xc3", "mov cr3, eax", "lgdt [0x1000]", "in al, dx", "iretd"]
    code = assembled_at(lines, OLD, 32, tmp_path)
    assert relocate(code, OLD, FAR, 32) == code


def test_a_rip_relative_operand_beyond_2_gib_is_refused(tmp_path):
    code = assembled_at(["mov rax, qword ptr [rip + data]"], OLD, 64, tmp_path)
    with pytest.raises(RelocationError, match="beyond RIP-relative reach") as caught:
        relocate(code, OLD, OLD + (1 << 32), 64)
    assert isinstance(caught.value, PatchError)


def test_bytes_that_are_no_instruction_are_refused():
    with pytest.raises(RelocationError, match="cannot decode"):
        relocate(b"\x90\x0f", OLD, FAR, 32)


@pytest.mark.parametrize(("tamper", "reason"), [
    (lambda m: m[:-1] + bytes([m[-1] ^ 1]), "no longer reaches the same addresses"),
    (lambda m: m[:2] + b"\x90" + m[3:], "changed bytes"),
    (lambda m: m + b"\x90", "no original became"),
    (lambda m: m[:-5], "missing"),
])  # fmt: skip
def test_the_check_refuses_moved_code_that_does_something_else(tamper, reason, tmp_path):
    original = assembled_at([PADDING, "jmp far_target"], OLD, 32, tmp_path)
    moved = relocate(original, OLD, FAR, 32)
    check_moved(original, OLD, moved, FAR, 32)
    with pytest.raises(RelocationError, match=reason):
        check_moved(original, OLD, tamper(moved), FAR, 32)


def code_sections(path):
    with path.open("rb") as file:
        for section in ELFFile(file).iter_sections():
            if section["sh_flags"] & SH_FLAGS.SHF_EXECINSTR:
                yield section["sh_addr"], section.data()


def runs(code: bytes, at: int, mode: int, length: int):
    """Consecutive decodable instructions of CODE, LENGTH at a time (as a detour window)."""
    run = []
    for insn in isa.decode_all(code, at, mode):
        if isinstance(insn, isa.Undecodable) or len(run) == length:
            yield from [run] if run else []
            run = []
        if not isinstance(insn, isa.Undecodable):
            run.append(insn)
    yield from [run] if run else []


def test_every_run_of_a_real_kernels_instructions_moves():
    moved = relative = 0
    for address, data in code_sections(guest_path("minikern")):
        for run in runs(data, address, 32, 6):
            code = b"".join(bytes(insn.bytes) for insn in run)
            relocate(code, run[0].address, 0xFC80_0000, 32)
            moved += len(run)
            relative += sum(insn.group(CS_GRP_BRANCH_RELATIVE) for insn in run)
    assert moved > 3000 and relative > 500


# RIP-relative forms a kernel's displaced instructions take, the displacement first
# and, for some, an immediate after it (which shifts where the displacement is read
# from: the next instruction's address is after the immediate).
RIP_FORMS = ["mov rax, qword ptr [rip {}]", "lea rcx, [rip {}]", "call qword ptr [rip {}]",
             "jmp qword ptr [rip {}]", "cmp dword ptr [rip {}], 0x12345678",
             "mov byte ptr [rip {}], 0x7f", "movzx eax, word ptr [rip {}]",
             "add qword ptr [rip {}], r9", "lgdt [rip {}]", "invlpg byte ptr [rip {}]"]
KERNEL_TEXT = 0xFFFF_FFFF_8010_0000


@settings(max_examples=300, deadline=None)
@given(form=st.sampled_from(RIP_FORMS),
       old=st.integers(0, 1 << 24).map(lambda n: KERNEL_TEXT + n),
       distance=st.integers(-(1 << 30), 1 << 30).filter(bool),
       target=st.integers(-(1 << 30), 1 << 30))
def test_a_moved_rip_relative_operand_still_names_its_address(form, old, distance, target):
    """Property: wherever an instruction moves within a disp32 of what it addresses,
    capstone reads the moved instruction as the same one naming the same address;
    moved out of a disp32's reach, relocate refuses it."""
    new = old + distance
    absolute = old + target
    source = form.format("+ 0x0")
    size = len(isa.assemble(source, old, 64))
    disp = absolute - (old + size)
    text = form.format(f"+ {disp:#x}" if disp >= 0 else f"- {-disp:#x}")
    code = isa.assemble(text, old, 64)
    [before] = isa.decode_all(code, old, 64)
    reach = absolute - (new + size)  # the displacement the moved copy would need
    if absolute == old or not -(1 << 31) <= reach < 1 << 31:
        # iced moves a reference to an instruction of the block with it; and a disp32
        # cannot reach further than 2 GiB
        with pytest.raises(RelocationError):
            relocate(code, old, new, 64)
        return
    moved = relocate(code, old, new, 64)
    [after] = isa.decode_all(moved, new, 64)
    assert (after.mnemonic, after.size) == (before.mnemonic, before.size)
    assert _without_rip(after.op_str) == _without_rip(before.op_str)
    assert _rip_target(after) == _rip_target(before) == absolute & (1 << 64) - 1


def _without_rip(op_str: str) -> str:
    return re.sub(r"\[rip[^\]]*\]", "[rip]", op_str)


def _rip_target(insn) -> int:
    mem = next(op.mem for op in insn.operands if op.type == X.X86_OP_MEM)
    assert mem.base == X.X86_REG_RIP
    return (insn.address + insn.size + mem.disp) & (1 << 64) - 1
