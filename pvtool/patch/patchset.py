"""Patch sets: a folder of patches/ with rules.toml (what happens to each instruction
class) and glue.asm (the functions the rewrites call). Data, read once and checked
when it loads: against the x86 catalogue, so a rule can never name a class that does
not exist; against the classes the hypervisor emulates (abi/pvtool.py
TRAP_SITE_CLASSES_BY_MODE), so a rule can never ask for a trap site nothing emulates; and
each template is parsed (patch/template.py), so one that moves the stack in a way
the patcher cannot follow never reaches an image."""

import tomllib
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path

from pvtool.abi.pvtool import TRAP_SITE_CLASSES_BY_MODE
from pvtool.errors import InputMissingError, PatchError
from pvtool.patch.template import Template, parse_template
from pvtool.x86.catalogue import BY_NAME

# The bundled patch sets are package data: pvtool/patches is a link to the repository's
# patches/, and pyproject.toml ships what it holds in the wheel, so an editable install
# and `pip install .` find them at the same place in the package.
PATCHES_DIR = Path(str(resources.files("pvtool") / "patches"))
DEFAULT_PATCH_SET = "xen32"
# The automatic port for each width: what `pvtool patch` uses when none is named.
DEFAULT_PATCH_SETS = {32: DEFAULT_PATCH_SET, 64: "xen64"}
MODES = (32, 64)
ARGUMENTS = frozenset({"value", "address", "selector"})


class Action(Enum):
    INLINE = "inline"  # replaced by a template (no exit)
    CALL = "call"  # replaced by a call to a glue function
    KEEP = "keep"  # left as is, on purpose
    TRAP = "trap"  # an int3 trap site the hypervisor emulates


@dataclass(frozen=True)
class Rule:
    class_name: str
    action: Action
    why: str
    template: Template | None = None  # INLINE
    function: str = ""  # CALL
    argument: str | None = None  # CALL: what eax carries into the function


@dataclass(frozen=True)
class PatchSet:
    name: str
    description: str
    mode: int  # the kernels it patches: 32- or 64-bit
    paging: str
    guest_os: str
    rules: dict[str, Rule]
    glue: dict[str, str]  # function name -> source (Intel syntax, {names} unfilled)
    path: Path

    def rule_for(self, class_name: str) -> Rule | None:
        return self.rules.get(class_name)


def load_patch_set(name_or_path: str | Path = DEFAULT_PATCH_SET) -> PatchSet:
    folder = Path(name_or_path)
    if not folder.is_dir():
        folder = PATCHES_DIR / str(name_or_path)
    rules_file, glue_file = folder / "rules.toml", folder / "glue.asm"
    if not rules_file.is_file():
        raise InputMissingError(f"{name_or_path}: no patch set (expected {rules_file})")
    try:
        data = tomllib.loads(rules_file.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PatchError(f"{rules_file}: {exc}") from None
    meta = data.get("patch_set", {})
    mode = meta.get("mode", 32)
    if mode not in MODES:
        raise PatchError(f"{rules_file}: [patch_set] mode must be 32 or 64, not {mode!r}")
    rules = {name: _rule(rules_file, name, body, mode)
             for name, body in data.get("class", {}).items()}
    glue = parse_glue(glue_file.read_text()) if glue_file.is_file() else {}
    for rule in rules.values():
        if rule.action is Action.CALL and rule.function not in glue:
            raise PatchError(f"{rules_file}: {rule.class_name} calls {rule.function}, "
                             f"which {glue_file.name} does not define")
    return PatchSet(name=meta.get("name", folder.name), description=meta.get("description", ""),
                    mode=mode, paging=meta.get("paging", "2-level"),
                    guest_os=meta.get("guest_os", ""), rules=rules, glue=glue, path=folder)


def _rule(source: Path, name: str, body: dict, mode: int) -> Rule:
    if name not in BY_NAME:
        raise PatchError(f"{source}: [class.{name}] is not in pvtool's x86 catalogue")
    if not isinstance(body, dict):
        raise PatchError(f"{source}: [class.{name}] must be a table")
    actions = [a for a in Action if a.value in body]
    if len(actions) != 1:
        raise PatchError(f"{source}: [class.{name}] needs exactly one of "
                         "inline, call, keep, trap")
    action = actions[0]
    value = body[action.value]
    if not isinstance(value, str) or not isinstance(body.get("why", ""), str):
        raise PatchError(f"{source}: [class.{name}] {action.value} and why must be strings")
    argument = body.get("argument")
    if argument is not None and argument not in ARGUMENTS:
        raise PatchError(f"{source}: [class.{name}] argument {argument!r}")
    if action is Action.TRAP and name not in TRAP_SITE_CLASSES_BY_MODE[mode]:
        raise PatchError(f"{source}: [class.{name}] asks for trap sites, but pvtool's "
                         f"hypervisor does not emulate {name}")
    if action in (Action.KEEP, Action.TRAP):
        return Rule(name, action, why=value)
    template = parse_template(value, f"{source}: [class.{name}]", mode) \
        if action is Action.INLINE else None
    return Rule(name, action, why=body.get("why", ""), template=template,
                function=value if action is Action.CALL else "", argument=argument)


def parse_glue(text: str) -> dict[str, str]:
    """Split glue.asm at its `## name` lines; comments (;) and blank lines dropped."""
    functions: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if raw.startswith("## "):
            current = functions.setdefault(raw[3:].strip(), [])
        elif line and current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in functions.items()}
