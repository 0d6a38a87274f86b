"""Code discovery on small programs built with GNU as and ld: every byte accounted for,
and every place control can land among the branch targets."""

import pytest

from pvtool.patch.discover import discover
from pvtool.x86.catalogue import classify
from tests.binutils import IMPURE, build
from tests.x86.gas import gnu_link, section_bytes, source

TEXT, DATA = 0x0010_0000, 0x0020_0000

# A kernel-shaped program: a switch compiled to a jump table, a jump over bytes that are
# data, a function reached only through a pointer in .data, one reached only through
# an immediate, and junk bytes nothing decodes.
PROGRAM = """
.text
.globl _start
_start:
    mov eax, [esp+4]
    cmp eax, 3
    ja other
    jmp dword ptr [eax*4 + table]
case0: cli
    jmp done
case1: sti
    jmp done
case2: hlt
    jmp done
case3: mov eax, cr3
    jmp done
other:
    mov ecx, OFFSET by_immediate
    call ecx
    jmp over_data
message:
    .ascii "\\x0f\\x22\\xd8 not code"
over_data:
    call dword ptr [handler]
    loop other
done:
    ret
    .p2align 2
table:
    .long case0, case1, case2, case3
by_pointer:
    push ebp
    in al, 0x60
    pop ebp
    ret
junk:
    .byte 0xc4, 0xc4  # no instruction starts at either byte
after_junk:
    out 0x80, al
    ret
by_immediate:
    wbinvd
    ret
.data
handler:
    .long by_pointer
""".strip().splitlines()


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    exe, symbols = gnu_link(PROGRAM, tmp_path_factory.mktemp("discover"), text=TEXT, data=DATA)
    text = section_bytes(exe, ".text")
    data = section_bytes(exe, ".data")
    code_map = discover([(TEXT, text)], [symbols["_start"]], data_regions=[(DATA, data)])
    return code_map, symbols, text


def test_coverage_accounts_for_every_byte(program):
    code_map, s, text = program
    c = code_map.coverage
    assert c.total == len(text)
    assert c.recursion and c.pointers and c.sweep and c.undecodable and not c.symbols
    assert c.data == s["by_pointer"] - s["table"]  # the jump table's body
    covered = sum(i.size for i in code_map.instructions.values())
    assert covered + sum(run.size for run in code_map.undecodable) + c.data == len(text)


def test_junk_is_reported_and_the_sweep_goes_on_after_it(program):
    code_map, s, _ = program
    runs = [(run.address, run.data) for run in code_map.undecodable]
    assert (s["junk"], b"\xc4\xc4") in runs
    data = [(s["message"], s["over_data"]), (s["table"], s["by_pointer"]),
            (s["junk"], s["after_junk"])]  # fmt: skip
    assert all(any(lo <= a < hi for lo, hi in data) for a, _ in runs)
    after = code_map.instructions[s["after_junk"]]
    assert after.mnemonic == "out" and classify(after.cs).name == "out"
    assert not code_map.reached_by_recursion(s["after_junk"])


def test_recursion_follows_the_jump_table_and_its_body_is_data(program):
    code_map, s, _ = program
    cases = [s[f"case{i}"] for i in range(4)]
    assert list(code_map.jump_tables.values()) == [cases]
    assert code_map.instructions_in(s["table"], s["by_pointer"]) == []
    assert (s["table"], s["by_pointer"]) not in code_map.possible_code()
    assert all(code_map.reached_by_recursion(a) for a in cases)
    assert set(cases) <= code_map.branch_targets
    assert [classify(code_map.instructions[a].cs).name for a in cases] == [
        "cli", "sti", "hlt", "mov_from_cr3"
    ]  # fmt: skip


def test_data_jumped_over_is_not_reached_by_recursion(program):
    code_map, s, _ = program
    assert code_map.reached_by_recursion(s["over_data"])
    assert code_map.reached_by_recursion(s["done"])  # after call, after loop
    message = code_map.instructions_in(s["message"], s["over_data"])
    assert message and not any(code_map.reached_by_recursion(i.address) for i in message)
    # the bytes 0f 22 d8 in the string do decode as `mov cr3, eax` in the sweep: a site
    # in data is reported for a human, and never rewritten across a branch target
    assert message[0].mnemonic == "mov" and message[0].op_str == "cr3, eax"


def test_a_function_reached_only_through_a_pointer_is_code_and_a_branch_target(program):
    code_map, s, _ = program
    assert s["by_pointer"] in code_map.branch_targets
    assert code_map.reached_by_recursion(s["by_pointer"])  # the pointer rule
    found = code_map.instructions_in(s["by_pointer"], s["junk"])
    assert [i.mnemonic for i in found] == ["push", "in", "pop", "ret"]
    # by_pointer's four instructions, and by_immediate's wbinvd; ret (an immediate)
    assert code_map.coverage.pointers == (s["junk"] - s["by_pointer"]) + 3


def test_a_function_whose_address_is_an_immediate_is_a_branch_target(program):
    code_map, s, _ = program
    assert s["by_immediate"] in code_map.branch_targets
    assert code_map.instructions[s["by_immediate"]].mnemonic == "wbinvd"


def test_entry_and_direct_targets_are_branch_targets(program):
    code_map, s, _ = program
    assert {s["_start"], s["other"], s["over_data"], s["done"]} <= code_map.branch_targets
    # a fall-through successor that nothing jumps to is not a target
    assert s["_start"] + 4 not in code_map.branch_targets


def test_instructions_in_is_in_address_order_and_matches_the_bytes(program):
    code_map, _, text = program
    listed = code_map.instructions_in(TEXT, TEXT + len(text))
    addresses = [i.address for i in listed]
    assert addresses == sorted(addresses) and len(listed) == len(code_map.instructions)
    for insn in listed:
        offset = insn.address - TEXT
        assert insn.bytes == text[offset : offset + insn.size] and insn.cs.size == insn.size


def test_a_jump_into_the_middle_of_an_instruction_keeps_both_decodings():
    code = bytes.fromhex("ebff c0 c3")  # jmp 0x1001 (into itself): inc eax; ret
    code_map = discover([(0x1000, code)], [0x1000])
    assert [(a, i.mnemonic) for a, i in sorted(code_map.instructions.items())] == [
        (0x1000, "jmp"), (0x1001, "inc"), (0x1003, "ret")
    ]  # fmt: skip
    assert code_map.coverage.recursion == 4 and code_map.coverage.sweep == 0
    assert 0x1001 in code_map.branch_targets


def test_paths_end_at_ret_jmp_iret_and_ud2_and_go_on_after_int_and_hlt():
    code = bytes.fromhex("cd80 f4 c3 fa cf fb 0f0b f4")
    code_map = discover([(0x1000, code)], [0x1000, 0x1005, 0x1007])
    recursive = [a for a in sorted(code_map.instructions) if code_map.reached_by_recursion(a)]
    assert recursive == [0x1000, 0x1002, 0x1003, 0x1005, 0x1007]  # int, hlt, ret; iret; ud2
    assert sorted(set(code_map.instructions) - set(recursive)) == [0x1004, 0x1006, 0x1009]
    assert (code_map.coverage.recursion, code_map.coverage.sweep) == (7, 3)


def test_far_jump_offset_is_followed():
    code = bytes.fromhex("ea0810000008 00 f4 fa")  # ljmp 0x8:0x1008; junk; hlt; cli
    code_map = discover([(0x1000, code)], [0x1000])
    assert code_map.reached_by_recursion(0x1008) and 0x1008 in code_map.branch_targets


def test_entry_points_outside_the_regions_and_several_regions():
    code_map = discover(
        [(0x1000, b"\xc3"), (0x3000, b"\xe8\xfb\xdf\xff\xff\xc3")], [0x3000, 0x9999]
    )
    assert {0x1000, 0x3000, 0x9999} <= code_map.branch_targets
    assert code_map.reached_by_recursion(0x1000) and code_map.coverage.total == 7


def test_unaligned_words_are_not_taken_for_pointers():
    code = b"\x90" * 8 + b"\xc3"
    aligned = discover(
        [(0x1000, code)], [], data_regions=[(0x2000, (0x1004).to_bytes(4, "little"))]
    )
    unaligned = discover(
        [(0x1000, code)], [], data_regions=[(0x2001, (0x1004).to_bytes(4, "little"))]
    )
    assert 0x1004 in aligned.branch_targets and 0x1004 not in unaligned.branch_targets


def test_64_bit_discovery():
    code = bytes.fromhex("e805000000 0f01f8 c3 cc 0f22d8 c3")  # call; swapgs; ret; ...
    code_map = discover([(0x1000, code)], [0x1000], mode=64)
    assert code_map.reached_by_recursion(0x100A)
    assert classify(code_map.instructions[0x100A].cs).name == "mov_to_cr3"


def test_data_in_code_is_never_decoded_and_stops_a_path():
    code = bytes.fromhex("90 90 02b0ad1b 0300 00 fb c3")  # nop; nop; a header; sti; ret
    code_map = discover([(0x1000, code)], [0x1000], data_in_code=[(0x1002, 0x1009)])
    assert sorted(code_map.instructions) == [0x1000, 0x1001, 0x1009, 0x100A]
    assert [code_map.reached_by_recursion(a) for a in (0x1001, 0x1009)] == [True, False]
    assert code_map.coverage.data == 7 and code_map.coverage.total == len(code)
    assert code_map.possible_code() == [(0x1009, 0x100B)]


def test_symbols_are_counted_apart_from_the_entry():
    code = bytes.fromhex("c3 fa c3")
    code_map = discover([(0x1000, code)], [0x1000], symbols=[0x1001])
    c = code_map.coverage
    assert (c.recursion, c.symbols, c.sweep) == (1, 2, 0)
    assert code_map.reached_by_recursion(0x1001)


@pytest.mark.parametrize("body, why", [
    ("90 90 c4c4", "runs into bytes that are no instruction"),
    ("90 e9 00100000", "jumps outside the code"),
    ("90 90 90 90", "runs off the end of the code"),
])  # fmt: skip
def test_a_pointer_is_no_proof_of_code_unless_all_it_reaches_decodes(body, why):
    code = bytes.fromhex("c3 " + body)
    pointer = (0x1001).to_bytes(4, "little")
    code_map = discover([(0x1000, code)], [0x1000], data_regions=[(0x2000, pointer)])
    assert not code_map.reached_by_recursion(0x1001), why
    assert code_map.coverage.pointers == 0
    assert code_map.possible_code() == [(0x1001, 0x1000 + len(code))]


def test_a_pointer_into_the_middle_of_code_already_found_proves_nothing():
    code = bytes.fromhex("b8 90 90 90 c3 c3")  # mov eax, 0xc3909090; ret
    pointer = (0x1002).to_bytes(4, "little")
    code_map = discover([(0x1000, code)], [0x1000], data_regions=[(0x2000, pointer)])
    assert not code_map.reached_by_recursion(0x1002)
    assert code_map.coverage.pointers == 0


@pytest.mark.parametrize("unreached, proven", [
    ("90 90 eb 9c 8d 76 00 c3", False),  # nop; nop; jmp short: the word names its 0x9c
    ("90 90 90 9c 8d 76 00 c3", True),  # nop; nop; nop; pushfd: in step
])  # fmt: skip
def test_a_pointer_inside_an_instruction_of_the_unreached_bytes_proves_nothing(
        unreached, proven):
    """Linux 6.1 at 0xc10ef36b: `jmp short` (eb 9c) ends a block only a patched static
    branch reaches, and a word of .rodata happens to name its 0x9c, which decodes as a
    pushfd that runs cleanly into the code after it. Decoded from the ret before it,
    the block has the jmp there, so the word proves nothing (a trap site's int3 would
    have replaced the jmp's displacement)."""
    code = bytes.fromhex("c3 " + unreached)
    pointer = (0x1004).to_bytes(4, "little")
    code_map = discover([(0x1000, code)], [0x1000], data_regions=[(0x2000, pointer)])
    assert code_map.reached_by_recursion(0x1004) is proven
    assert code_map.coverage.pointers == (len(code) - 4 if proven else 0)


def test_overlapping_regions_are_refused():
    with pytest.raises(ValueError, match="overlap"):
        discover([(0x1000, b"\x90" * 16), (0x1008, b"\x90")], [])


def test_site_candidates_hold_every_catalogue_instruction(program):
    code_map, _, _ = program
    sites = {a for a, i in code_map.instructions.items() if classify(i.cs) is not None}
    candidates = [i.address for i in code_map.site_candidates()]
    assert sites and sites <= set(candidates) and candidates == sorted(candidates)
    assert len(candidates) < len(code_map.instructions)


def test_a_frame_setup_at_a_function_boundary_is_code():
    # ret; padding to 0x1010: push ebp; mov ebp, esp; cli; pop ebp; ret — and the same
    # function again at 0x1021, off gcc's 16-byte function alignment
    function = bytes.fromhex("55 89e5 fa 5d c3")
    code = b"\xc3" + b"\x90" * 15 + function + b"\x90" * 11 + function
    code_map = discover([(0x1000, code)], [0x1000])
    assert code_map.reached_by_recursion(0x1013)  # the cli
    assert code_map.coverage.prologues == len(function)
    assert not code_map.reached_by_recursion(0x1021)
    # possible code: the padding after each ret, and the second function
    assert code_map.possible_code() == [(0x1001, 0x1010), (0x1016, 0x1000 + len(code))]


def test_listing_decodes_overlapping_instructions_and_adjacent_regions_each_once():
    code_map = discover([(0x1000, bytes.fromhex("ebff c0 c3")), (0x1004, b"\x90\xc3")],
                        [0x1000, 0x1004])
    listed = [(i.address, i.bytes.hex(), i.mnemonic) for i in code_map.instructions_in(0, 1 << 32)]
    assert listed == [(0x1000, "ebff", "jmp"), (0x1001, "ffc0", "inc"), (0x1003, "c3", "ret"),
                      (0x1004, "90", "nop"), (0x1005, "c3", "ret")]
    assert listed == [(a, i.bytes.hex(), i.mnemonic) for a, i in code_map.instructions.items()]


# gcc's 64-bit switch tables: absolute 8-byte entries (-mcmodel=kernel) and, in
# position-independent code, int32 offsets from a table a RIP-relative lea names.
PROGRAM_64 = """
.text
.globl _start
_start:
    cmp edi, 1
    ja other
    jmp qword ptr [rdi*8 + abs_table]
abs0: cli
    ret
abs1: sti
    ret
other:
    call loads
    lea rdx, [rip + rel_table]
    movsxd rax, dword ptr [rdx + rdi*4]
    add rax, rdx
    jmp rax
rel0: hlt
    ret
rel1: mov rax, cr3
    ret
by_rip: wbinvd
    ret
loads:
    lea rcx, [rip + by_rip]
    call rcx
    ret
.section .rodata
.p2align 3
abs_table: .quad abs0, abs1
rel_table: .long rel0 - rel_table, rel1 - rel_table
""".strip().splitlines()


@pytest.fixture(scope="module")
def program_64(tmp_path_factory):
    program = build(tmp_path_factory.mktemp("discover64"), source(PROGRAM_64, 64), bits=64,
                    entry="_start", text=TEXT, data=DATA, flags=IMPURE)
    exe, symbols = program.elf, program.symbols
    text = section_bytes(exe, ".text")
    rodata = section_bytes(exe, ".rodata")
    code_map = discover([(TEXT, text)], [symbols["_start"]], mode=64,
                        data_regions=[(symbols["abs_table"], rodata)])
    return code_map, symbols


def test_64_bit_jump_tables_of_8_byte_entries_and_of_rip_relative_offsets(program_64):
    code_map, symbols = program_64
    for case in ("abs0", "abs1", "rel0", "rel1"):
        assert symbols[case] in code_map.branch_targets, case
    assert code_map.jump_tables[symbols["_start"] + 5] == [symbols["abs0"], symbols["abs1"]]


def test_a_rip_relative_lea_of_a_function_makes_it_a_target(program_64):
    code_map, symbols = program_64
    assert symbols["by_rip"] in code_map.branch_targets
    assert code_map.reached_by_recursion(symbols["by_rip"])
