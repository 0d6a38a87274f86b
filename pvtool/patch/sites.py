"""Sites: every privileged or sensitive instruction of the catalogue found in the
kernel's code, each with the patch set's rule for its class, and the replacement that
rule renders for it.

A template names the site's operands ({gpr}, {dst}, ...: OPERANDS below); what a
name asks of the site is the form it accepts, so a site whose operands a name cannot
express becomes a trap site. Each name is rendered at the stack depth of the
statement that uses it (patch/template.py), so an operand addressed from esp still
reaches the kernel's data after the template's pushes."""

from dataclasses import dataclass, replace

from capstone.x86_const import X86_OP_REG

from pvtool.abi.pvtool import TRAP_SITE_CLASSES_BY_MODE
from pvtool.errors import PatchError
from pvtool.patch.discover import CodeMap, Insn
from pvtool.patch.glue import fill
from pvtool.patch.patchset import Action, PatchSet, Rule
from pvtool.patch.template import ADDRESS_SAMPLE, OPERAND_SAMPLES, Template, parse_template
from pvtool.x86.catalogue import InsnClass, classify
from pvtool.x86.operands import (
    memory_operand,
    operand_texts,
    segment_move,
    special_register_move,
)

REG32 = {"ax": "eax", "bx": "ebx", "cx": "ecx", "dx": "edx", "si": "esi", "di": "edi",
         "bp": "ebp", "sp": "esp"}
REG16 = {v: k for k, v in REG32.items()}
# x86-64's general registers by their 64-bit name: the 32-bit one (writing it
# zero-extends into the whole register, SDM Vol. 1, 3.4.1.1) and the 16-bit one.
REG64 = {f"r{k}": v for k, v in REG32.items()} | {f"r{n}": f"r{n}d" for n in range(8, 16)}
REG16 |= {f"r{n}d": f"r{n}w" for n in range(8, 16)}
STACK_POINTER = frozenset({"rsp", "esp", "sp"})
# A call whose glue function takes an argument in eax (rax) keeps the kernel's
# register around it: the save, the statement that loads the argument, the call, the
# restore.
ARGUMENT_REGISTER = {32: "eax", 64: "rax"}
SAVE_ARGUMENT = {mode: parse_template(f"push {register}", "sites.py: a call with an argument",
                                      mode=mode)
                 for mode, register in ARGUMENT_REGISTER.items()}


POSSIBLE_CODE = ("possible code: reached by no path from the entry, a function symbol or "
                 "a pointer; left as is")


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
    """Every instruction of CODE in the catalogue for its mode. Only the candidates
    (catalogue.may_classify) are decoded with detail."""
    sites = []
    for insn in code.site_candidates():
        cls = classify(insn.cs)
        if cls is None or code.mode not in cls.modes:
            continue
        found_by = "recursion" if code.reached_by_recursion(insn.address) else "sweep"
        rule = patch_set.rule_for(cls.name) or Rule(
            cls.name, Action.TRAP, f"{patch_set.name} has no rule for {cls.name}")
        if found_by == "sweep":  # it may be data: discover.py's rules prove no more
            rule = Rule(cls.name, Action.KEEP, POSSIBLE_CODE)
        sites.append(_trap_if_unsupported(Site(insn, cls, rule, found_by)))
    return sites


def _trap_if_unsupported(site: Site) -> Site:
    """A site whose operand form its rule cannot express is a trap site from the start,
    so that no neighbour's detour window moves it into a stub it has no rendering for."""
    rule = site.rule
    try:
        if rule.action is Action.INLINE:
            _operands(site, rule.template, symbols=None)
        elif rule.action is Action.CALL and rule.argument is not None:
            _load_argument(site, rule.argument)
    except UnsupportedForm as exc:
        return replace(site, rule=Rule(rule.class_name, Action.TRAP, str(exc)))
    return site


def check_trap_site(site: Site, reason: str) -> None:
    """A site may become a trap site only if the hypervisor emulates its class
    (TRAP_SITE_CLASSES_BY_MODE, for the kernel's width): any other would crash the
    domain when it runs, so the image is refused instead, naming the site."""
    if site.cls.name not in TRAP_SITE_CLASSES_BY_MODE[site.insn.mode]:
        raise PatchError(f"{site.text} at {site.address:#010x}: "
                         f"{reason.removeprefix(site.text + ': ')}, and pvtool's hypervisor "
                         f"cannot emulate {site.cls.name} at a trap site")


def replacement(site: Site, symbols: dict[str, int]) -> list[str]:
    """The statements replacing SITE (Intel syntax, numbers filled in)."""
    rule = site.rule
    if rule.action is Action.INLINE:
        operands = _operands(site, rule.template, symbols)
        return [fill(statement.text, symbols | names, site.cls.name)
                for statement, names in zip(rule.template.statements, operands, strict=True)]
    if rule.action is Action.CALL:
        call = f"call {symbols[rule.function]:#x}"
        load = None if rule.argument is None else _load_argument(site, rule.argument)
        register = ARGUMENT_REGISTER[site.insn.mode]
        return [call] if load is None else [f"push {register}", load, call, f"pop {register}"]
    raise PatchError(f"{site.cls.name}: a {rule.action.value} site has no replacement")


def _operands(site: Site, template: Template,
              symbols: dict[str, int] | None) -> list[dict[str, str]]:
    """For each statement of TEMPLATE, the operand names it uses rendered for SITE at
    the statement's depth (addresses only given SYMBOLS); UnsupportedForm if SITE's
    operand has another form."""
    return [{name: OPERANDS[name](site, statement.depth, template.moves_stack)
             for name in statement.names & OPERANDS.keys()}
            | {name: RECORDS[name](site, symbols) for name in statement.names & RECORDS.keys()}
            for statement in template.statements]


def _load_argument(site: Site, argument: str) -> str | None:
    """The statement that puts the argument in eax (rax) after the save (None: it is
    there)."""
    insn = site.insn.cs
    register = ARGUMENT_REGISTER[site.insn.mode]
    depth = SAVE_ARGUMENT[site.insn.mode].end_depth
    if argument == "value":
        move = special_register_move(insn)
        gpr = move.gpr if move else _lone_register(site, depth, moves_stack=False)
        if gpr in STACK_POINTER:  # the value it had before the save
            return f"lea {register}, [{gpr} + {depth}]"
        return None if gpr == register else f"mov {register}, {gpr}"
    if argument == "address":
        mem = memory_operand(insn)
        if mem is None:
            raise UnsupportedForm(f"{site.text}: no memory operand")
        if mem.segment:  # lea would drop the segment's base from the linear address
            raise UnsupportedForm(f"{site.text}: segment overrides are not rewritten")
        return f"lea {register}, {_address(site, mem, depth)}"
    return f"movzx eax, {_source16(site, depth, moves_stack=True)}"


# -- the operand names a template may use ------------------------------------------------
def _gpr(site: Site, depth: int, moves_stack: bool) -> str:
    """The general register of a mov to or from a control register."""
    special = special_register_move(site.insn.cs)
    if special is None:
        raise _no_operand(site, "gpr")
    return _register(site, special.gpr, moves_stack)


def _sreg(site: Site, depth: int, moves_stack: bool) -> str:
    return _segment_move(site, "sreg").sreg


def _destination(site: Site, depth: int, moves_stack: bool) -> str:
    """The register or memory a mov from CS or SS writes."""
    moved = _segment_move(site, "dst")
    if moved.write:
        raise _no_operand(site, "dst")
    if "[" in moved.operand:
        return _rebased(site, moved.operand, depth)
    return _register(site, moved.operand, moves_stack)


def _destination32(site: Site, depth: int, moves_stack: bool) -> str:
    """A register destination, as its 32-bit register (str, sldt and smsw store
    16 bits to memory but zero-extend into a 32-bit register)."""
    texts = operand_texts(site.insn.cs)
    names = {**REG32, **REG64, **{v: v for v in (*REG32.values(), *REG64.values())},
             **{w: d for d, w in REG16.items() if d.startswith("r")}}
    if not texts or texts[0] not in names:
        raise UnsupportedForm(f"{site.text}: only register destinations are rewritten")
    return _register(site, names[texts[0]], moves_stack)


def _destination16(site: Site, depth: int, moves_stack: bool) -> str:
    """A register destination of a mov from CS or SS, as its 16-bit register."""
    moved = _segment_move(site, "dst16")
    if moved.write or "[" in moved.operand:
        raise UnsupportedForm(f"{site.text}: only register destinations are rewritten")
    name = _register(site, moved.operand, moves_stack)
    name = REG32.get(REG64.get(name, name), REG64.get(name, name))
    return REG16.get(name, name)


def _source16(site: Site, depth: int, moves_stack: bool) -> str:
    """A 16-bit source as movzx takes it: a 16-bit register or `word ptr [...]`."""
    texts = operand_texts(site.insn.cs)
    if not texts:
        raise _no_operand(site, "src16")
    text = texts[-1]
    if "[" in text:
        return _rebased(site, text, depth, size="word ptr ")
    return REG16.get(_register(site, text, moves_stack), text)


def _lone_register(site: Site, depth: int, moves_stack: bool) -> str:
    """The single register operand, as written (rdfsbase rax, wrgsbase r9d)."""
    ops = site.insn.cs.operands
    if len(ops) != 1 or ops[0].type != X86_OP_REG:
        raise _no_operand(site, "reg")
    return _register(site, site.insn.cs.reg_name(ops[0].reg), moves_stack)


def _sreg_record(site: Site, symbols: dict[str, int] | None) -> str:
    """The address where the glue records the selector the kernel loaded into the
    site's CS or SS (regs_cs, regs_ss of a patch set that keeps them)."""
    name = f"regs_{_segment_move(site, 'sreg_record').sreg}"
    if symbols is None:
        return ADDRESS_SAMPLE
    if name not in symbols:
        raise PatchError(f"{site.cls.name}: unknown name {name!r} in a template")
    return hex(symbols[name])


OPERANDS = {"gpr": _gpr, "sreg": _sreg, "dst": _destination, "dst32": _destination32,
            "dst16": _destination16, "src16": _source16, "reg": _lone_register}
# Operands that are addresses of the patch set's data chosen by the site.
RECORDS = {"sreg_record": _sreg_record}
if OPERANDS.keys() | RECORDS.keys() != OPERAND_SAMPLES.keys():
    raise ImportError(f"sites.py renders {sorted(OPERANDS | RECORDS)}, templates may name "
                      f"{sorted(OPERAND_SAMPLES)}")


def _register(site: Site, name: str, moves_stack: bool) -> str:
    """NAME, unless it is the stack pointer and the template moves the stack."""
    if name in STACK_POINTER and moves_stack:
        raise UnsupportedForm(f"{site.text}: the stub's pushes move esp")
    return name


def _segment_move(site: Site, name: str):
    moved = segment_move(site.insn.cs)
    if moved is None:
        raise _no_operand(site, name)
    return moved


def _no_operand(site: Site, name: str) -> PatchError:
    return PatchError(f"{site.cls.name}: the template names {{{name}}}, which "
                      f"{site.text} does not have")


def _rebased(site: Site, text: str, pushed: int, size: str | None = None) -> str:
    """TEXT's memory operand moved by PUSHED bytes if it is addressed from esp."""
    mem = memory_operand(site.insn.cs)
    if mem.segment:
        raise UnsupportedForm(f"{site.text}: segment overrides are not rewritten")
    prefix = size if size is not None else text[:text.index("[")]
    return prefix + _address(site, mem, pushed)


# A 32-bit displacement is sign-extended to 64 bits (SDM Vol. 2, 2.2.1.3): the
# absolute addresses it reaches without a base register.
DISP32_REACH = range(-(1 << 31), 1 << 31)
ADDRESS_MASK = (1 << 64) - 1
# A target this near the site is also near wherever the site's replacement lands (its
# stub, in the sections after the kernel, layout64.py), where keystone encodes the
# absolute address RIP-relative.
NEAR = 1 << 30


def _address(site: Site, mem, pushed: int) -> str:
    """MEM's address as an operand the replacement can use where it is placed: rebased
    by PUSHED if it is addressed from the stack pointer, and a RIP-relative one
    (64-bit) as the absolute address it names, since the replacement may sit in a
    stub elsewhere; one a disp32 cannot reach cannot be rewritten."""
    if mem.base == "rip":
        target = (site.address + site.insn.size + mem.disp) & ADDRESS_MASK
        signed = target - (1 << 64) if target >> 63 else target
        near = abs(target - site.address) < NEAR
        if mem.index or not (near or signed in DISP32_REACH):
            raise UnsupportedForm(f"{site.text}: its RIP-relative address {target:#x} is "
                                  "out of a 32-bit displacement's reach")
        return f"[{signed:#x}]" if signed >= 0 else f"[-{-signed:#x}]"
    disp = mem.disp + (pushed if mem.base in STACK_POINTER else 0)
    parts = [p for p in (mem.base, f"{mem.index}*{mem.scale}" if mem.index else None) if p]
    if disp or not parts:
        parts.append(f"{disp:#x}" if disp >= 0 else f"-{-disp:#x}")
    return "[" + " + ".join(parts).replace("+ -", "- ") + "]"
