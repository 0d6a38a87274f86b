"""The patch report: every site with its class, placement and reason, counts by
placement (as E9Patch reports coverage), discovery coverage and the checks that
passed. The rich table and the JSON file both come from this one object."""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pvtool.image.elf import ElfImage
from pvtool.patch.discover import CodeMap
from pvtool.patch.emit import Emitted
from pvtool.patch.patchset import Action, PatchSet
from pvtool.patch.plan import Placement, Plan
from pvtool.patch.possible_code import PossibleCode, summarise
from pvtool.patch.sites import Site


@dataclass(frozen=True)
class SiteRecord:
    address: int
    symbol: str
    instruction: str
    cls: str
    kind: str
    placement: str
    reason: str
    found_by: str
    stub: int | None


@dataclass(frozen=True)
class PatchReport:
    input: Path
    output: Path
    diff_path: Path
    report_path: Path
    patch_set: str
    sites: tuple[SiteRecord, ...]
    instructions: int  # decoded by discovery: what the patcher worked through
    coverage: dict[str, int]
    glue_bytes: int
    stub_bytes: int
    checks: tuple[str, ...]
    possible_code: PossibleCode = PossibleCode()

    @property
    def placements(self) -> Counter:
        return Counter(s.placement for s in self.sites)

    @classmethod
    def build(cls, image: ElfImage, output: Path, patch_set: PatchSet, code: CodeMap,
              plans: list[Plan], emitted: Emitted, checks: list[str], *,
              diff_path: Path, report_path: Path) -> "PatchReport":
        stub_of = {id(plan): address for plan, address, _ in emitted.stubs}
        records = []
        for plan in plans:
            for site in plan.sites:
                sym = image.symbol_at(site.address)
                records.append(SiteRecord(
                    address=site.address,
                    symbol=f"{sym.name}+{site.address - sym.value:#x}" if sym else "?",
                    instruction=site.text, cls=site.cls.name, kind=site.cls.kind.value,
                    placement=plan.placement.value,
                    reason=_reason(plan, site),
                    found_by=site.found_by, stub=stub_of.get(id(plan))))
        records.sort(key=lambda r: r.address)
        c = code.coverage
        coverage = {"recursion": c.recursion, "sweep": c.sweep, "undecodable": c.undecodable,
                    "symbols": c.symbols, "pointers": c.pointers, "prologues": c.prologues,
                    "data": c.data}
        return cls(Path(image.path), output, diff_path, report_path, patch_set.name,
                   tuple(records), len(code.instructions), coverage,
                   len(emitted.layout.glue.code),
                   sum(len(code) for _, _, code in emitted.stubs), tuple(checks),
                   summarise(image, code, [r.address for r in records
                                           if r.found_by == "sweep"]))

    def to_dict(self) -> dict:
        return {
            "input": str(self.input),
            "output": str(self.output),
            "listing_diff": str(self.diff_path),
            "patch_set": self.patch_set,
            "placements": {p.value: self.placements.get(p.value, 0) for p in Placement},
            "sites": [{"address": f"{s.address:#010x}", "symbol": s.symbol,
                       "instruction": s.instruction, "class": s.cls, "kind": s.kind,
                       "placement": s.placement, "reason": s.reason,
                       "found_by": s.found_by,
                       "stub": f"{s.stub:#010x}" if s.stub is not None else None}
                      for s in self.sites],
            "instructions": self.instructions,
            "coverage_bytes": self.coverage,
            "possible_code": self.possible_code.to_dict(),
            "glue_bytes": self.glue_bytes,
            "stub_bytes": self.stub_bytes,
            "verified": list(self.checks),
        }


def _reason(plan: Plan, site: Site) -> str:
    """The plan's reason is its first site's; a site its window also covers says so."""
    if plan.placement is Placement.KEPT:
        return site.rule.why
    first = plan.sites[0]
    if site is first:
        return plan.reason
    how = "kept as is" if site.rule.action is Action.KEEP else "rewritten"
    return f"{how}, moved into the detour of the site at {first.address:#x}"
