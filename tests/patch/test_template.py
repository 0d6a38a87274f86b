"""Templates (patch/template.py): each statement's depth is what the statements before
it pushed, by the sizes the SDM gives (PUSH and POP move ESP by the operand size, 4 in
32-bit code or 2 with the 0x66 prefix; PUSHFD/POPFD by 4; PUSHAD/POPAD by 32; a near
CALL returns with ESP where it was); any other way of moving the stack is refused."""

import pytest

from pvtool.errors import PatchError
from pvtool.patch.template import parse_template


@pytest.mark.parametrize("text, depths, end", [
    ("push eax\npush ax\npushfd\npushad\nnop", [0, 4, 6, 10, 42], 42),
    ("pop eax\npop ax\npopfd\npopad", [0, -4, -6, -10], -42),
    ("push 0x12345678\npush word ptr [eax]\npush dword ptr [esp + 8]", [0, 4, 6], 10),
    ("pushfd\ncall {glue}\nmov {gpr}, dword ptr [esp + 4]\njmp {glue}", [0, 4, 4, 4], 4),
    ("mov byte ptr [{vcpu_mask}], 1", [0], 0),
])
def test_each_statement_knows_what_the_statements_before_it_pushed(text, depths, end):
    template = parse_template(text, "t", 32)
    assert [s.depth for s in template.statements] == depths
    assert template.end_depth == end
    assert template.moves_stack == (depths != [0] * len(depths) or end != 0)


def test_blank_lines_are_not_statements_and_names_are_collected():
    template = parse_template("\n  pushfd\n\nmov {dst}, {sreg}\n", "t", 32)
    assert [s.text for s in template.statements] == ["pushfd", "mov {dst}, {sreg}"]
    assert template.names == {"dst", "sreg"}
    assert template.statements[1].names == {"dst", "sreg"}
    assert parse_template("", "t", 32).statements == ()


@pytest.mark.parametrize("statement", [
    "sub esp, 4", "add esp, 8", "lea esp, [esp + 4]", "mov esp, ebp", "xchg esp, eax",
    "and esp, 0xfffffff0", "mov sp, ax", "enter 8, 0", "leave", "ret", "retf", "iretd",
    "int 0x80", "int3", "pop esp",
])
def test_any_other_move_of_the_stack_pointer_is_refused(statement):
    with pytest.raises(PatchError) as caught:
        parse_template(f"nop\n{statement}", "rules.toml: [class.x]", 32)
    assert caught.value.message.startswith(f"rules.toml: [class.x]: `{statement}` moves "
                                           "the stack pointer")
    assert caught.value.exit_status == 76


@pytest.mark.parametrize("statement", ["push {gpr}", "pop {dst}", "push dword ptr [{glue}]"])
def test_a_push_or_pop_of_a_name_is_refused(statement):
    """Its size, and so every later depth, would depend on the site."""
    with pytest.raises(PatchError) as caught:
        parse_template(statement, "w", 32)
    assert "pushes or pops a {name}" in caught.value.message


def test_a_statement_keystone_would_mis_encode_is_refused_when_the_set_loads():
    with pytest.raises(PatchError) as caught:
        parse_template("pushf", "w", 32)
    assert "write 'pushfd'" in caught.value.message


@pytest.mark.parametrize("statement", ["mov eax, {}", "mov eax, {0}", "mov eax, {glue:#x}",
                                       "mov eax, {glue.x}"])
def test_a_field_that_is_not_a_plain_name_is_refused(statement):
    with pytest.raises(PatchError) as caught:
        parse_template(statement, "w", 32)
    assert "names something else than a plain {name}" in caught.value.message
