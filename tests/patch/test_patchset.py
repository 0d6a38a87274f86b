"""Patch sets: patches/xen32 loads and matches the x86 catalogue; a broken rules file
is refused with a PatchError that names it (a trap rule for a class the hypervisor
does not emulate, a template that moves the stack in a way the patcher cannot follow,
included); templates know the stack depth of each statement; glue.asm splits into
functions."""

import shutil
import tomllib
from pathlib import Path

import pytest

from pvtool.errors import InputMissingError, PatchError
from pvtool.patch.patchset import PATCHES_DIR, Action, load_patch_set, parse_glue
from pvtool.x86.catalogue import CATALOGUE
from tests.cli import pvtool
from tests.oracles import guest_path

XEN32 = PATCHES_DIR / "xen32"


def toml_classes() -> dict[str, dict]:
    """rules.toml read by tomllib alone, not by the code under test."""
    return tomllib.loads((XEN32 / "rules.toml").read_text())["class"]


def test_xen32_loads_with_every_class_of_its_rules_file():
    patch_set = load_patch_set("xen32")
    assert patch_set.name == "xen32"
    assert patch_set.path == XEN32
    assert patch_set.mode == 32
    assert set(patch_set.rules) == set(toml_classes())
    assert patch_set.rules["cli"].action is Action.INLINE
    assert patch_set.rules["cli"].template.text == "mov byte ptr [{vcpu_mask}], 1"
    assert patch_set.rules["hlt"].action is Action.CALL
    assert patch_set.rules["hlt"].function == "pv_hlt"
    assert patch_set.rules["lgdt"].argument == "address"
    assert patch_set.rules["in"].action is Action.KEEP
    assert patch_set.rules["pop_ss"].action is Action.TRAP


def test_a_patch_set_folder_can_be_named_by_its_path():
    assert set(load_patch_set(XEN32).rules) == set(toml_classes())


def test_every_xen32_rule_names_a_catalogue_class_and_every_32_bit_class_has_a_rule():
    names = {row.name for row in CATALOGUE}
    rules = set(toml_classes())
    assert rules <= names, rules - names
    assert {row.name for row in CATALOGUE if 32 in row.modes} <= rules


def test_every_call_rule_names_a_glue_function():
    patch_set = load_patch_set("xen32")
    calls = {r.function for r in patch_set.rules.values() if r.action is Action.CALL}
    assert calls == {"pv_hlt", "pv_lgdt", "pv_lidt", "pv_sgdt", "pv_sidt", "pv_ltr",
                     "pv_lldt", "pv_write_cr0", "pv_write_cr3", "pv_write_cr4",
                     "pv_invlpg", "pv_clts", "pv_lmsw"}
    assert calls <= set(patch_set.glue)
    assert "pv_entry" in patch_set.glue


def broken_set(tmp_path: Path, edit) -> Path:
    """A copy of xen32 whose rules.toml text went through EDIT."""
    folder = tmp_path / "broken"
    shutil.copytree(XEN32, folder)
    rules = folder / "rules.toml"
    rules.write_text(edit(rules.read_text()))
    return folder


BROKEN_RULES = {
    "unknown class": (lambda t: t + '\n[class.mov_to_cr9]\ninline = "nop"\n',
                      "mov_to_cr9"),
    "two actions": (lambda t: t.replace('[class.cli]\n', '[class.cli]\nkeep = "no"\n'),
                    "exactly one"),
    "no action": (lambda t: t.replace('[class.hlt]\ncall = "pv_hlt"\n', '[class.hlt]\n'),
                  "exactly one"),
    "missing glue function": (lambda t: t.replace('call = "pv_hlt"', 'call = "pv_nap"'),
                              "pv_nap"),
    "bad argument": (lambda t: t.replace('argument = "address"', 'argument = "offset"', 1),
                     "offset"),
    "malformed TOML": (lambda t: t.replace('[class.cli]', '[class.cli', 1), ""),
    "action is not text": (lambda t: t.replace('inline = "mov byte ptr [{vcpu_mask}], 1"',
                                               "inline = 1"), "cli"),
    "class is not a table": (lambda t: t + '\n[class]\nswapgs = "inline"\n', "swapgs"),
    "trap rule without a handler": (
        lambda t: t.replace('inline = "movzx {dst32}, word ptr [{regs_cr0}]"',
                            'trap = "let the hypervisor do it"'),
        "[class.smsw] asks for trap sites, but pvtool's hypervisor does not emulate smsw"),
    "template moves the stack": (
        lambda t: t.replace('inline = "mov {gpr}, dword ptr [{regs_cr0}]"',
                            'inline = "sub esp, 4\\nmov {gpr}, dword ptr [{regs_cr0}]"'),
        "[class.mov_from_cr0]: `sub esp, 4` moves the stack pointer"),
    "template pushes a name": (
        lambda t: t.replace('inline = "mov {gpr}, dword ptr [{regs_cr4}]"',
                            'inline = "push {gpr}\\npop {gpr}"'),
        "[class.mov_from_cr4]: `push {gpr}` pushes or pops a {name}"),
    "a mode that is no x86 width": (
        lambda t: t.replace('mode = 32', 'mode = 16'),
        "[patch_set] mode must be 32 or 64, not 16"),
    "template mis-encoded by keystone": (
        lambda t: t.replace('inline = "pushfd\\ncall {pv_pushf_fixup}"',
                            'inline = "pushf\\ncall {pv_pushf_fixup}"'),
        "write 'pushfd'"),
}


@pytest.mark.parametrize("case", BROKEN_RULES)
def test_a_broken_rules_file_is_a_patch_error_naming_it(tmp_path, case):
    edit, detail = BROKEN_RULES[case]
    folder = broken_set(tmp_path, edit)
    with pytest.raises(PatchError) as caught:
        load_patch_set(folder)
    assert str(folder / "rules.toml") in caught.value.message
    assert detail in caught.value.message
    assert caught.value.exit_status == 76


def test_a_trap_rule_without_a_handler_fails_pvtool_patch_in_one_line(tmp_path):
    """`pvtool patch --patch-set DIR`: the patch set is refused before any site is
    planned, with the patch-error status, naming the rules file and the class."""
    folder = broken_set(tmp_path, BROKEN_RULES["trap rule without a handler"][0])
    result = pvtool("patch", "--patch-set", folder, guest_path("hello"), "-o",
                    tmp_path / "o.elf")
    assert result.status == 76, result.stderr
    line = result.error_line()
    assert str(folder / "rules.toml") in line
    assert "does not emulate smsw" in line
    assert not (tmp_path / "o.elf").exists()


@pytest.mark.parametrize("cls, depths, end", [
    ("mov_to_ss", [0, 4, 8, 8, 8, 8, 4], 0),  # pushfd, push eax: {src16} is 8 deep
    ("mov_from_sreg", [0, 4, 4, 4], 0),  # pushfd: {dst} is 4 deep in both statements
    ("pushf", [0, 4], 4),  # the pushfd stays: pushf pushes
    ("popf", [0, 0], -4),
    ("cli", [0], 0),
])
def test_xen32_templates_know_the_stack_depth_of_each_statement(cls, depths, end):
    """Derived from the statements (push, pushfd +4; pop, popfd -4; call 0): the
    expected depths are counted by hand from rules.toml."""
    template = load_patch_set("xen32").rules[cls].template
    statements = [line for line in toml_classes()[cls]["inline"].splitlines() if line]
    assert [s.text for s in template.statements] == statements
    assert [s.depth for s in template.statements] == depths
    assert template.end_depth == end


def test_a_missing_patch_set_is_a_missing_input(tmp_path):
    with pytest.raises(InputMissingError) as caught:
        load_patch_set(tmp_path / "nothing-here")
    assert caught.value.exit_status == 66
    with pytest.raises(InputMissingError):
        load_patch_set("no-such-set")


def test_parse_glue_splits_functions_and_drops_comments_and_blank_lines():
    text = """; a header comment, before any function
mov eax, 1

## first
; the first function's comment
push eax   ; save it
  pop eax

## second
label:   ; a label
jmp label
;; nothing
"""
    assert parse_glue(text) == {
        "first": "push eax\npop eax",
        "second": "label:\njmp label",
    }


def test_parse_glue_of_xen32_keeps_every_function_and_no_comment():
    source = (XEN32 / "glue.asm").read_text()
    glue = parse_glue(source)
    headers = [line[3:].strip() for line in source.splitlines() if line.startswith("## ")]
    assert list(glue) == headers
    for body in glue.values():
        assert ";" not in body
        assert all(line.strip() == line and line for line in body.splitlines())
    assert glue["pv_iret"] == "or dword ptr [esp + 4], 1\njmp {hc_iret}"
