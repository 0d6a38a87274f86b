"""Cached engines, decoding that accounts for every byte, and an assembler that refuses
keystone's wrong encodings."""

import pytest
from capstone.x86_const import X86_OP_MEM, X86_REG_RIP

from pvtool.errors import PatchError
from pvtool.x86 import isa
from pvtool.x86.isa import AssemblyError, Undecodable
from tests.x86.gas import gnu_assemble

# ---- engines and decoding


def test_engines_are_created_once_per_mode():
    assert isa.decoder(32) is isa.decoder(32)
    assert isa.decoder(32) is not isa.decoder(64)
    assert isa.assembler(64) is isa.assembler(64)
    assert isa.decoder(32).detail


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="32 or 64"):
        isa.decoder(16)


def test_decode_one_caches_by_bytes_address_and_mode():
    first = isa.decode_one(b"\x0f\x22\xd8\x90", 0x1000, 32)
    assert (first.mnemonic, first.op_str, first.size) == ("mov", "cr3, eax", 3)
    assert isa.decode_one(bytearray(b"\x0f\x22\xd8\x90"), 0x1000, 32) is first
    assert isa.decode_one(b"\x0f\x22\xd8\x90", 0x2000, 32) is not first
    assert isa.decode_one(b"\xeb\xfe", 0x1000, 64).op_str == "0x1000"


def test_decode_one_returns_none_for_bytes_that_are_no_instruction():
    assert isa.decode_one(b"\xff\xff", 0, 32) is None
    assert isa.decode_one(b"\x0f", 0, 32) is None  # truncated


def test_decode_all_reports_undecodable_runs_and_keeps_going():
    code = b"\x90" + b"\xff\xff" + b"\xfa" + b"\xff\xff" + b"\xfb" + b"\x0f\x01\x10" + b"\x0f"
    items = list(isa.decode_all(code, 0x100, 32))
    shown = [
        (i.address, i.data) if isinstance(i, Undecodable) else (i.address, i.mnemonic)
        for i in items
    ]
    assert shown == [
        (0x100, "nop"),
        (0x101, b"\xff\xff"),
        (0x103, "cli"),
        (0x104, b"\xff\xff"),  # 'ff ff' and 'ff fb' are no instruction; 'fb' is
        (0x106, "sti"),
        (0x107, "lgdt"),
        (0x10A, b"\x0f"),  # an instruction cut by the end of the buffer
    ]
    assert sum(i.size for i in items) == len(code)


def test_decode_all_of_an_empty_buffer_yields_nothing():
    assert list(isa.decode_all(b"", 0, 32)) == []


# ---- assemble (keystone as is)


def test_assemble_splits_statements_on_newlines_and_semicolons():
    assert isa.assemble("cli; sti\nhlt", 0, 32) == b"\xfa\xfb\xf4"


def test_assemble_error_names_the_failing_statement():
    with pytest.raises(AssemblyError) as caught:
        isa.assemble("mov eax, 1\njmp done\nfrob eax, 2\ndone: ret", 0x1000, 32)
    assert caught.value.statement == "frob eax, 2"
    assert "frob eax, 2" in str(caught.value)
    assert isinstance(caught.value, PatchError)


def test_keystone_alone_gets_system_instructions_wrong():
    """Why assemble_checked exists (shared/UNICORN.md): these are keystone's bytes."""
    assert isa.assemble("lgdt [0x1000]", 0, 32) == bytes.fromhex("660f011500100000")
    assert isa.assemble("iret", 0, 32) == bytes.fromhex("66cf")
    assert isa.assemble("pushf", 0, 32) == bytes.fromhex("669c")
    assert isa.assemble("push cs", 0, 32) == bytes.fromhex("660e")
    assert isa.assemble("ljmp 0x8:0x12345", 0, 32) == bytes.fromhex("66ea45230800")


# ---- assemble_checked

GOOD_32 = [
    "mov eax, 1", "mov eax, -1", "mov dword ptr [eax+8], 0x10", "mov eax, [eax+ecx*4+8]",
    "mov word ptr [eax], 5", "mov ax, bx", "lea eax, [ebx+4]",
    "lea eax, [eax*2]", "movzx eax, byte ptr [eax]", "xchg eax, ebx", "test ecx, edx",
    "add esp, -4", "push -1", "push 0x12345678", "pop ebp", "in al, dx", "out 0x80, al",
    "in ax, dx", "out dx, eax", "rep insd", "rep outsb", "insw", "mov cr3, eax",
    "mov eax, cr2", "mov dr7, eax", "wrmsr", "rdmsr", "clts", "wbinvd", "cli", "sti",
    "hlt", "iretd", "pushfd", "popfd", "pushad", "popad", "int 0x82", "int3", "retf",
    "ret 4", "invlpg [eax]", "lldt ax", "ltr ax", "str ax", "mov ss, eax", "mov eax, cs",
    "mov eax, dword ptr fs:[eax]", "mov eax, ss:[ebp-4]", "mov eax, [esp]",
    "lock add dword ptr [eax], 1", "rep stosd", "cdq", "nop",
    "mov eax, 0x10000+4*2",
]  # fmt: skip
KEYSTONE_ONLY_32 = ["mov byte ptr [ebx], 10h", "cmp byte ptr [eax], 0a0h"]  # GNU as: no 'h'
GOOD_64 = [
    "mov rax, cr3", "mov cr3, rax", "iretq", "pushfq", "popfq", "swapgs", "syscall",
    "mov eax, [rip+0x10]", "mov rax, [rsp+8]", "mov eax, [eax+ecx*4+8]", "in eax, dx",
    "lgdt [rax]", "invlpg [rax]", "push fs", "mov r8, 0x123456789",
]  # fmt: skip


@pytest.mark.parametrize("statement", GOOD_32 + KEYSTONE_ONLY_32)
def test_assemble_checked_accepts_good_32_bit_statements(statement):
    assert isa.assemble_checked(statement, 0x1000, 32)


@pytest.mark.parametrize("statement", GOOD_64)
def test_assemble_checked_accepts_good_64_bit_statements(statement):
    assert isa.assemble_checked(statement, 0x1000, 64)


@pytest.mark.parametrize(("mode", "statements"), [(32, GOOD_32), (64, GOOD_64)])
def test_assemble_checked_bytes_equal_gnu_as(mode, statements, tmp_path):
    ours = b"".join(isa.assemble_checked(s, 0x1000, mode) for s in statements)
    # RIP-relative operands depend only on the distance, so the address does not matter.
    assert ours.hex() == gnu_assemble(statements, mode, tmp_path).hex()


def test_branches_compare_as_absolute_targets_and_labels_resolve():
    code = isa.assemble_checked("jz 0x1010; jmp done\nnop\ndone: call 0x2000", 0x1000, 32)
    assert code == bytes.fromhex("740e eb01 90 e8f60f0000")
    assert isa.assemble_checked("spin: jmp spin", 0x4000, 32) == b"\xeb\xfe"
    assert isa.assemble_checked("jmp out\nout:", 0x4000, 32) == b"\xeb\x00"


def test_system_instructions_come_from_the_verified_table():
    assert isa.assemble_checked("push cs", 0, 32) == b"\x0e"
    assert isa.assemble_checked("lgdt [eax]; lidt [ ESP ]", 0, 32) == bytes.fromhex(
        "0f0110 0f011c24"
    )
    assert isa.assemble_checked("mov eax, 1; pop ss", 0, 32) == bytes.fromhex("b80100000017")
    assert isa.assemble_checked("sysretq", 0, 64) == bytes.fromhex("480f07")


@pytest.mark.parametrize(
    ("mode", "statement", "reason"),
    [
        (32, "lgdt [0x1000]", "operand-size prefix 0x66"),
        (32, "sidt [eax+8]", "operand-size prefix 0x66"),
        (32, "iret", "write 'iretd'"),
        (32, "pushf", "write 'pushfd'"),
        (32, "popf", "write 'popfd'"),
        (64, "iret", "write 'iretq'"),
        (64, "sysexit", "write 'sysexitq'"),
        (32, "ljmp 0x8:0x12345", "0x2345 is not 0x12345"),
    ],
)
def test_assemble_checked_rejects_keystones_wrong_encodings(mode, statement, reason):
    with pytest.raises(AssemblyError, match=reason) as caught:
        isa.assemble_checked(f"nop\n{statement}\nnop", 0x1000, mode)
    assert caught.value.statement == statement


@pytest.mark.parametrize("statement", ["lgdt [0x1000]", "invlpg [0x1000]",
                                       "mov byte ptr [0xffffffff80105000], 1",
                                       "lea rax, [-0x7ff00000]"])
def test_64_bit_absolute_operands_pass_when_rip_relative_reaches_them(statement):
    """keystone makes 64-bit absolute operands RIP-relative: right at the address it
    assembled them for, which is where the patcher puts them. The check accepts the
    encoding because the address it reaches from there is the source's."""
    base = 0xFFFFFFFF80100000
    code = isa.assemble_checked(f"nop\n{statement}\nnop", base, 64)
    insn = list(isa.decode_all(code, base, 64))[1]
    mem = next(op.mem for op in insn.operands if op.type == X86_OP_MEM)
    source = isa.asmcheck.parse(statement)[0][0]
    absolute = isa.asmcheck.source_operand(
        next(o for o in source.operands if "[" in o), isa.register_names(64), {})[4]
    if mem.base == X86_REG_RIP:
        assert (insn.address + insn.size + mem.disp - absolute) % (1 << 64) == 0
    else:  # out of rel32's reach keystone keeps a disp32, sign-extended
        assert (mem.disp - absolute) % (1 << 64) == 0


def test_a_mismatch_names_the_statement_and_both_texts():
    with pytest.raises(AssemblyError) as caught:
        isa.assemble_checked("cli; lgdt [0x1000]", 0x1000, 32)
    message = str(caught.value)
    assert "'lgdt [0x1000]' assembled as 'lgdt [0x1000]' (660f011500100000)" in message


def test_assemble_checked_refuses_directives_and_bad_statements():
    with pytest.raises(AssemblyError, match="directive"):
        isa.assemble_checked(".byte 0x90", 0, 32)
    with pytest.raises(AssemblyError) as caught:
        isa.assemble_checked("nop; mov eax, nowhere", 0, 32)
    assert caught.value.statement == "mov eax, nowhere"


def test_decode_all_lite_matches_decode_all_across_chunk_boundaries():
    # 7-byte instructions straddle every 16 KiB chunk boundary; junk bytes between runs
    code = (bytes.fromhex("c7 05 00 10 00 00 01 00 00 00") * 3000 + b"\xff\xff"
            + bytes.fromhex("0f 22 d8 fa") * 2000 + b"\x0f")
    full = [(i.address, i.data) if isinstance(i, Undecodable) else (i.address, i.size,
            i.mnemonic, i.op_str) for i in isa.decode_all(code, 0x100000, 32)]
    lite = [(i.address, i.data) if isinstance(i, Undecodable) else i
            for i in isa.decode_all_lite(code, 0x100000, 32)]
    assert lite == full
    assert len(code) > 2 * isa._CHUNK
    assert lite[-1] == (0x100000 + len(code) - 1, b"\x0f")


def test_decode_one_lite_is_the_instruction_without_detail():
    assert isa.decode_one_lite(b"\x0f\x22\xd8\x90", 0x1000, 32) == (0x1000, 3, "mov",
                                                                     "cr3, eax")
    assert isa.decode_one_lite(b"\x0f", 0, 32) is None
    assert not isa.lite_decoder(32).detail


@pytest.mark.parametrize(("address", "statement"), [
    (0x0, "mov rcx, qword ptr [0x1000]"), (0x1000, "mov rcx, qword ptr [0x1000]"),
    (0x2000, "lea rax, [0x3000]"), (0x0, "mov rcx, qword ptr [0]"),
])
def test_keystones_wrong_rip_displacements_are_worked_out_again(address, statement):
    """keystone 0.9.2 turns `mov rcx, [0x1000]` at 0x1000 into `[rip + 0x1000]`, which
    reaches 0x2007: assemble_checked encodes the displacement that reaches 0x1000."""
    code = isa.assemble_checked(statement, address, 64)
    [insn] = isa.decode_all(code, address, 64)
    mem = next(op.mem for op in insn.operands if op.type == X86_OP_MEM)
    absolute = int(statement.rpartition("[")[2].rstrip("]"), 16)
    assert mem.base == X86_REG_RIP
    assert (insn.address + insn.size + mem.disp) % (1 << 64) == absolute
