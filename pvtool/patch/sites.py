"""Sites: every privileged or sensitive instruction of the catalogue found in the
kernel's code, each with the patch set's rule for its class, and the replacement that
rule renders for it."""

from dataclasses import dataclass, replace

from pvtool.errors import PatchError
from pvtool.patch.discover import CodeMap, Insn
from pvtool.patch.glue import fill
from pvtool.patch.patchset import Action, PatchSet, Rule
from pvtool.x86.catalogue import InsnClass, classify
from pvtool.x86.operands import (
    memory_operand,
    operand_texts,
    segment_move,
    special_register_move,
)

MODE = 32
REG32 = {"ax": "eax", "bx": "ebx", "cx": "ecx", "dx": "edx", "si": "esi", "di": "edi",
         "bp": "ebp", "sp": "esp"}
REG16 = {v: k for k, v in REG32.items()}
STACK_POINTER = frozenset({"esp", "sp"})


class UnsupportedForm(PatchError):
    """The rule's template cannot express this operand form: the site becomes a trap."""


@dataclass(frozen=True)
class Site:
    insn: Insn
    cls: InsnClass
    rule: Rule
    found_by: str  # "recursion" or "sweep"

    @property
    def address(self) -> int:
        return self.insn.address

    @property
    def end(self) -> int:
        return self.insn.address + self.insn.size

    @property
    def text(self) -> str:
        return f"{self.insn.mnemonic} {self.insn.op_str}".strip()


def find_sites(code: CodeMap, patch_set: PatchSet) -> list[Site]:
    sites = []
    for insn in code.instructions_in(0, 1 << 32):
        cls = classify(insn.cs)
        if cls is None or MODE not in cls.modes:
            continue
        rule = patch_set.rule_for(cls.name) or Rule(
            cls.name, Action.TRAP, f"{patch_set.name} has no rule for {cls.name}")
        found_by = "recursion" if code.reached_by_recursion(insn.address) else "sweep"
        sites.append(_trap_if_unsupported(Site(insn, cls, rule, found_by)))
    return sites


def _trap_if_unsupported(site: Site) -> Site:
    """A site whose operand form its rule cannot express is a trap site from the start,
    so that no neighbour's detour window moves it into a stub it has no rendering for."""
    rule = site.rule
    try:
        if rule.action is Action.INLINE:
            operand_names(site)
        elif rule.action is Action.CALL and rule.argument is not None:
            _load_eax(site, rule.argument)
    except UnsupportedForm as exc:
        return replace(site, rule=Rule(rule.class_name, Action.TRAP, str(exc)))
    return site


def replacement(site: Site, symbols: dict[str, int]) -> list[str]:
    """The statements replacing SITE (Intel syntax, numbers filled in)."""
    rule = site.rule
    if rule.action is Action.INLINE:
        names = symbols | operand_names(site)
        return [s for s in fill(rule.template, names, site.cls.name).splitlines() if s]
    if rule.action is Action.CALL:
        call = f"call {symbols[rule.function]:#x}"
        if rule.argument is None:
            return [call]
        load = _load_eax(site, rule.argument)
        return [call] if load is None else ["push eax", load, call, "pop eax"]
    raise PatchError(f"{site.cls.name}: a {rule.action.value} site has no replacement")


def operand_names(site: Site) -> dict[str, str]:
    """What a template may name: gpr (mov crN), dst/dst32 (store forms), src16 and sreg
    (segment moves). Memory operands are rebased for the pushes the templates make."""
    insn = site.insn.cs
    names: dict[str, str] = {}
    special = special_register_move(insn)
    if special is not None:
        names["gpr"] = special.gpr
    moved = segment_move(insn)
    if moved is not None:
        if moved.operand in STACK_POINTER:
            raise UnsupportedForm(f"{site.text}: the stub's pushes move esp")
        names["sreg"] = moved.sreg
        if moved.write:
            names["src16"] = _word_operand(site, moved.operand, pushed=8)
        else:
            names["dst"] = _rebased(site, moved.operand, pushed=4)
    texts = operand_texts(insn)
    if site.cls.name in ("str", "sldt", "smsw"):
        if not texts or texts[0] not in REG32.values() | REG32.keys():
            raise UnsupportedForm(f"{site.text}: only register destinations are rewritten")
        names["dst32"] = REG32.get(texts[0], texts[0])
    return names


def _load_eax(site: Site, argument: str) -> str | None:
    """The statement that puts the argument in eax after `push eax` (None: it is there)."""
    insn = site.insn.cs
    if argument == "value":
        gpr = special_register_move(insn).gpr
        if gpr == "esp":  # the value it had before `push eax`
            return "lea eax, [esp + 4]"
        return None if gpr == "eax" else f"mov eax, {gpr}"
    if argument == "address":
        mem = memory_operand(insn)
        if mem is None:
            raise UnsupportedForm(f"{site.text}: no memory operand")
        if mem.segment:  # lea would drop the segment's base from the linear address
            raise UnsupportedForm(f"{site.text}: segment overrides are not rewritten")
        return f"lea eax, {_address(mem, pushed=4)}"
    texts = operand_texts(insn)
    if texts[0] in STACK_POINTER:
        raise UnsupportedForm(f"{site.text}: the stub's pushes move esp")
    return f"movzx eax, {_word_operand(site, texts[0], pushed=4)}"


def _word_operand(site: Site, text: str, pushed: int) -> str:
    """A 16-bit source as movzx takes it: a 16-bit register or `word ptr [...]`."""
    if text in REG16:
        return REG16[text]
    if text in REG32:
        return text
    return _rebased(site, text, pushed, size="word ptr ")


def _rebased(site: Site, text: str, pushed: int, size: str | None = None) -> str:
    """TEXT with its memory operand moved by PUSHED bytes if it is addressed from esp."""
    if "[" not in text:
        return text
    mem = memory_operand(site.insn.cs)
    if mem.segment:
        raise UnsupportedForm(f"{site.text}: segment overrides are not rewritten")
    prefix = size if size is not None else text[:text.index("[")]
    return prefix + _address(mem, pushed)


def _address(mem, pushed: int) -> str:
    disp = mem.disp + (pushed if mem.base == "esp" else 0)
    parts = [p for p in (mem.base, f"{mem.index}*{mem.scale}" if mem.index else None) if p]
    if disp or not parts:
        parts.append(f"{disp:#x}" if disp >= 0 else f"-{-disp:#x}")
    return "[" + " + ".join(parts).replace("+ -", "- ") + "]"
