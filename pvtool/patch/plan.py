"""Placement: where each site's replacement goes, in DESIGN.md's order of preference.

1. In place, when the replacement fits in the instruction's own bytes (NOP-padded).
2. A detour: a `jmp` over a window of whole instructions (at least 5 bytes) into a new
   stub that holds the replacement and the window's other instructions, moved and
   fixed up, then jumps back. No instruction inside the window but the first may be a
   branch target, none may need a rel8 fixup (loop, jecxz), and after a jump or a
   return only alignment padding may follow, so control can only enter at its start.
3. A trap site: a one-byte int3 the hypervisor recognises from a table, emulating the
   original instruction.
Sites the rule keeps stay as they are; every choice carries its reason for the report.
"""

from bisect import bisect_left
from dataclasses import dataclass, field
from enum import Enum

from pvtool.patch.discover import CodeMap, Insn
from pvtool.patch.patchset import Action
from pvtool.patch.sites import Site, UnsupportedForm, check_trap_site, replacement
from pvtool.x86.isa import assemble_checked
from pvtool.x86.operands import memory_operand

JMP_REL32_SIZE = 5
# The symbol (patch/emit.py) naming where the detours' stubs begin, and how far from
# there a moved RIP-relative operand may point: a disp32's reach less room for the
# stubs themselves.
STUBS_SYMBOL = "pv_stubs"
STUB_REACH = (1 << 31) - (16 << 20)
ADDRESS_MASK = (1 << 64) - 1
MAX_WINDOW_INSNS = 6
NO_FALLTHROUGH = frozenset({"jmp", "ret", "retf", "iret", "iretd", "ljmp", "ud2"})
REL8_ONLY = frozenset({"loop", "loope", "loopne", "jecxz", "jcxz"})


class Placement(Enum):
    IN_PLACE = "in-place"
    DETOUR = "detour"
    TRAP = "trap"
    KEPT = "kept"


@dataclass
class Plan:
    placement: Placement
    sites: list[Site]  # the sites this plan handles (a detour may hold several)
    start: int  # the original bytes it changes: [start, end)
    end: int
    reason: str
    window: list[Insn] = field(default_factory=list)  # DETOUR: every displaced insn
    code: bytes = b""  # IN_PLACE: the replacement


def changed_ranges(plans: list[Plan]) -> list[tuple[int, int]]:
    """The [start, end) ranges of original bytes the plans rewrite, in address order."""
    return sorted((p.start, p.end) for p in plans if p.placement is not Placement.KEPT)


def plan_sites(sites: list[Site], code: CodeMap, symbols: dict[str, int]) -> list[Plan]:
    """One plan per site not already inside another's window, in address order. A site
    that finds no window of its own joins the window of the neighbour that took its
    room (Linux's sync_core: `pushf; push cs; push 1f; iret; 1:`, where pushf's
    window holds the iret's only room) before it falls back to a trap site, which
    exits to the hypervisor every time it runs."""
    owner: dict[int, Plan] = {}  # instruction address -> the plan that holds it
    site_at = {s.address: s for s in sites}
    for site in sites:
        if site.address in owner:
            continue
        plan = _plan_one(site, code, site_at, owner, symbols)
        owner.update(dict.fromkeys((i.address for i in plan.window or [site.insn]), plan))
    unique = {id(plan): plan for plan in owner.values()}
    return sorted(unique.values(), key=lambda p: p.start)


def _plan_one(site: Site, code: CodeMap, site_at: dict[int, Site], owner: dict[int, Plan],
              symbols: dict[str, int]) -> Plan:
    action = site.rule.action
    if action is Action.KEEP:
        return Plan(Placement.KEPT, [site], site.address, site.end, site.rule.why)
    if action is Action.TRAP:
        return _trap(site, site.rule.why)
    try:
        statements = replacement(site, symbols)
    except UnsupportedForm as exc:
        return _trap(site, str(exc))
    inline = assemble_checked("\n".join(statements), site.address, code.mode) \
        if statements else b""
    if len(inline) <= site.insn.size:
        return Plan(Placement.IN_PLACE, [site], site.address, site.end,
                    "the replacement fits in the instruction's bytes", code=inline)
    stubs = symbols.get(STUBS_SYMBOL)
    window = _find_window(site, code, site_at, owner.keys(), stubs)
    if window is not None:
        return _detour(window, site_at, f"replacement is {len(inline)} bytes; detour over "
                       f"{len(window)} instruction(s)")
    joined = _join(site, code, site_at, owner, stubs)
    return joined or _trap(site, _no_window_reason(site, code))


def _detour(window: list[Insn], site_at: dict[int, Site], reason: str) -> Plan:
    covered = [site_at[i.address] for i in window if i.address in site_at]
    end = window[-1].address + window[-1].size
    return Plan(Placement.DETOUR, covered, window[0].address, end, reason, window=window)


def _join(site: Site, code: CodeMap, site_at: dict[int, Site],
          owner: dict[int, Plan], stubs: int | None) -> Plan | None:
    """A detour over a neighbour's window and SITE together, when the neighbour's
    window (or its in-place rewrite: a 64-bit kernel's `swapgs; iretq`, whose swapgs
    becomes nothing in place) took the room SITE's own would need."""
    around = _neighbours(site.insn, code, 2 * MAX_WINDOW_INSNS)
    for plan in {id(p): p for i in around if (p := owner.get(i.address))}.values():
        if plan.placement not in (Placement.DETOUR, Placement.IN_PLACE):
            continue
        lo, hi = min(plan.start, site.address), max(plan.end, site.end)
        window = [i for i in around if lo <= i.address < hi]
        others = owner.keys() - {i.address for i in plan.window or [s.insn for s in plan.sites]}
        if len(window) <= 2 * MAX_WINDOW_INSNS and _usable(window, code, site_at, others,
                                                           stubs):
            return _detour(window, site_at, f"detour over {len(window)} instruction(s), "
                           f"joined with the site at {site.address:#x}, for which "
                           "no window of its own was left")
    return None


def _trap(site: Site, reason: str) -> Plan:
    check_trap_site(site, reason)
    return Plan(Placement.TRAP, [site], site.address, site.end, reason)


def _find_window(site: Site, code: CodeMap, site_at: dict[int, Site],
                 taken: set[int], stubs: int | None) -> list[Insn] | None:
    """The smallest run of whole instructions around SITE that a jmp can cover."""
    around = _neighbours(site.insn, code)
    centre = next(i for i, insn in enumerate(around) if insn.address == site.address)
    best: list[Insn] | None = None
    for first in range(centre, max(-1, centre - MAX_WINDOW_INSNS), -1):
        for last in range(centre, min(len(around), first + MAX_WINDOW_INSNS)):
            window = around[first:last + 1]
            size = window[-1].address + window[-1].size - window[0].address
            if size < JMP_REL32_SIZE:
                continue
            if _usable(window, code, site_at, taken, stubs) and (
                    best is None or len(window) < len(best)):
                best = window
            break
    return best


def _no_window_reason(site: Site, code: CodeMap) -> str:
    """Why no detour fits: the branch targets that cut every window around SITE."""
    near = [i.address for i in _neighbours(site.insn, code)
            if abs(i.address - site.address) < 2 * JMP_REL32_SIZE
            and i.address in code.branch_targets]
    if not near:
        return "no run of whole, movable instructions of 5 bytes holds it"
    listed = ", ".join(f"{a:#x}" for a in near)
    return f"branch targets at {listed} cut every 5-byte window that holds it"


def _neighbours(insn: Insn, code: CodeMap, reach: int = MAX_WINDOW_INSNS - 1) -> list[Insn]:
    """Contiguous instructions around INSN, up to REACH on each side (a gap ends the
    run): all a window holding INSN can use. Only these are decoded."""
    index = bisect_left(code.starts, insn.address)
    run = [code.instruction_at(a)
           for a in code.starts[max(0, index - reach):index + reach + 1]]
    index = next(i for i, x in enumerate(run) if x.address == insn.address)
    lo = index
    while lo > 0 and run[lo - 1].address + run[lo - 1].size == run[lo].address:
        lo -= 1
    hi = index
    while hi + 1 < len(run) and run[hi].address + run[hi].size == run[hi + 1].address:
        hi += 1
    return run[lo:hi + 1]


def _rip_unmovable(insn: Insn, stubs: int, window: list[Insn]) -> bool:
    """Whether INSN addresses memory RIP-relative (64-bit) where a detour cannot take
    it: at an address a disp32 from the stubs, which start at STUBS, cannot reach
    (x86/relocate.py could not fix it up), or inside the WINDOW itself, whose bytes
    the detour's jmp replaces."""
    if "rip" not in insn.op_str:
        return False
    mem = memory_operand(insn.cs)
    if mem is None or mem.base != "rip":
        return False
    target = (insn.end + mem.disp) & ADDRESS_MASK
    return abs(target - stubs) >= STUB_REACH or window[0].address <= target < window[-1].end


def is_padding(insn: Insn) -> bool:
    """Alignment filler compilers put after a jump or return: nops of every length,
    int3, and the moves and leas of a register onto itself."""
    if insn.mnemonic in ("nop", "int3"):
        return True
    operands = insn.op_str.split(", ")
    return (insn.mnemonic in ("mov", "xchg", "lea") and len(operands) == 2
            and operands[1].strip("[]") == operands[0])


def _usable(window: list[Insn], code: CodeMap, site_at: dict[int, Site],
            taken: set[int], stubs: int | None = None) -> bool:
    ended = False  # an unconditional jump or return came before: only padding may follow
    for position, insn in enumerate(window):
        if insn.address in taken:
            return False
        if position > 0 and insn.address in code.branch_targets:
            return False
        if ended and not is_padding(insn):
            return False
        if insn.mnemonic in REL8_ONLY:
            return False
        if stubs is not None and _rip_unmovable(insn, stubs, window):
            return False
        other = site_at.get(insn.address)
        if other is not None and other.rule.action is Action.TRAP:
            return False
        ended = ended or insn.mnemonic in NO_FALLTHROUGH
    return True
