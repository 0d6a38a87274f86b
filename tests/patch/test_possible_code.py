"""Possible code summarised: by section, alignment padding counted apart, and only the
runs that hold sites listed."""

from types import SimpleNamespace

from pvtool.image import elf_format
from pvtool.image.elf import Section
from pvtool.patch.discover import discover
from pvtool.patch.possible_code import (
    OUTSIDE_SECTIONS,
    RunWithSites,
    SectionSummary,
    summarise,
)

# .text at 0x1000: the entry's ret; nop, int3, lea esi,[esi+0] (gas's 3-byte filler);
# a symbol's ret; cli, nop that nothing reaches. At 0x2000, outside any section: two
# nops that no path end precedes, then a symbol's ret.
TEXT = bytes.fromhex("c3 90 cc 8d7600 c3 fa 90")
OTHER = bytes.fromhex("90 90 c3")


def _summary():
    code = discover([(0x1000, TEXT), (0x2000, OTHER)], [0x1000], symbols=[0x1006, 0x2002])
    text = Section(".text", "progbits", elf_format.SHF_ALLOC | elf_format.SHF_EXECINSTR,
                   0x1000, 0, len(TEXT), 16)
    return code, summarise(SimpleNamespace(sections=[text]), code, [0x1007])


def test_runs_are_the_sweeps():
    code, _ = _summary()
    assert code.possible_code() == [(0x1001, 0x1006), (0x1007, 0x1009), (0x2000, 0x2002)]


def test_filler_after_a_path_end_is_padding_and_the_rest_is_not():
    _, summary = _summary()
    text, other = summary.by_section[".text"], summary.by_section[OUTSIDE_SECTIONS]
    assert (text.runs, text.bytes, text.padding_runs, text.padding_bytes) == (2, 7, 1, 5)
    assert (other.runs, other.bytes, other.padding_runs) == (1, 2, 0)
    assert summary.total == SectionSummary(runs=3, bytes=9, padding_runs=1, padding_bytes=5)


def test_only_runs_with_sites_are_listed():
    _, summary = _summary()
    assert summary.with_sites == (RunWithSites(0x1007, 0x1009, ".text", (0x1007,)),)
    listed = summary.to_dict()["runs_with_sites"]
    assert listed == [{"start": "0x00001007", "end": "0x00001009", "section": ".text",
                       "sites": ["0x00001007"]}]
