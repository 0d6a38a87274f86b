"""Possible code, summarised: the executable bytes only the linear sweep decoded
(discover.py, 4.), by section, with the runs that are alignment padding counted apart
and the runs that hold sites listed. A distribution's Linux has a hundred thousand such
runs, most of them the filler gcc puts between functions: listing every run would make
the report tens of megabytes and hide the few that matter, the sites a human must check
(they are kept as they are: the bytes may be data)."""

import bisect
import functools
import re
from collections import defaultdict
from dataclasses import astuple, dataclass, field

from pvtool.image.elf import ElfImage
from pvtool.patch.code_map import CodeMap
from pvtool.x86.isa import decode_one_lite

WHY = "reached by no path from the entry, a function symbol, a pointer or a prologue"
PADDING_RULE = ("only nop, int3 or lea r,[r] filler, after an instruction with no "
                "fall-through (ret, jmp, ud2): the alignment padding between functions")
OUTSIDE_SECTIONS = "the executable segment"
# gcc's and gas's filler: `nop` in all its lengths, `int3`, and `lea esi,[esi+0]` (with
# or without eiz), which gas emits for i386 padding (gas/config/tc-i386.c, i386_align_code).
_FILLER_LEA = re.compile(r"(\w+), \[\1(?: \+ eiz(?:\*1)?)?\]$")


@dataclass
class SectionSummary:
    runs: int = 0
    bytes: int = 0
    padding_runs: int = 0
    padding_bytes: int = 0


@dataclass(frozen=True)
class RunWithSites:
    start: int
    end: int
    section: str
    sites: tuple[int, ...]


@dataclass(frozen=True)
class PossibleCode:
    by_section: dict[str, SectionSummary] = field(default_factory=dict)
    with_sites: tuple[RunWithSites, ...] = ()

    @property
    def total(self) -> SectionSummary:
        """The sections' figures added up."""
        return SectionSummary(*map(sum, zip(*map(astuple, self.by_section.values()),
                                                  strict=True)))

    def to_dict(self) -> dict:
        total = self.total
        return {"reason": WHY, "runs": total.runs, "bytes": total.bytes,
                "padding": {"runs": total.padding_runs, "bytes": total.padding_bytes,
                            "rule": PADDING_RULE},
                "by_section": {name: vars(s) for name, s in self.by_section.items()},
                "runs_with_sites": [{"start": f"{r.start:#010x}", "end": f"{r.end:#010x}",
                                     "section": r.section,
                                     "sites": [f"{a:#010x}" for a in r.sites]}
                                    for r in self.with_sites]}


def summarise(image: ElfImage, code: CodeMap, swept_sites: list[int]) -> PossibleCode:
    """Possible code of `code` by section; `swept_sites` are the addresses of the sites
    the sweep found, in order."""
    section_of = _section_namer(image)
    by_section: dict[str, SectionSummary] = defaultdict(SectionSummary)
    with_sites = []
    for start, end in code.possible_code():
        name = section_of(start)
        summary = by_section[name]
        summary.runs += 1
        summary.bytes += end - start
        sites = swept_sites[bisect.bisect_left(swept_sites, start):
                            bisect.bisect_left(swept_sites, end)]
        if sites:
            with_sites.append(RunWithSites(start, end, name, tuple(sites)))
        elif is_padding(code, start, end):
            summary.padding_runs += 1
            summary.padding_bytes += end - start
    return PossibleCode(dict(by_section), tuple(with_sites))


def is_padding(code: CodeMap, start: int, end: int) -> bool:
    """Whether [start, end) is filler that control cannot run into: after a path's end,
    filled back to back with filler instructions."""
    if not code.ends_path_at(start):
        return False
    insns = code.back_to_back(start, end)
    return insns is not None and all(_is_filler(insn, code.mode) for insn in insns)


@functools.cache
def _is_filler(insn: bytes, mode: int) -> bool:
    """Whether the instruction `insn` is filler; cached by its bytes, as gas's filler is
    a handful of encodings repeated a hundred thousand times in a Linux."""
    _, _, mnemonic, op_str = decode_one_lite(insn, 0, mode)
    return mnemonic in ("nop", "int3") or (mnemonic == "lea"
                                           and _FILLER_LEA.match(op_str) is not None)


def _section_namer(image: ElfImage):
    """address -> the name of the executable section holding it."""
    sections = sorted((s.addr, s.addr + s.size, s.name) for s in image.sections
                      if s.executable and s.size)
    starts = [start for start, _, _ in sections]

    def name(address: int) -> str:
        i = bisect.bisect_right(starts, address) - 1
        if i >= 0 and address < sections[i][1]:
            return sections[i][2]
        return OUTSIDE_SECTIONS

    return name
