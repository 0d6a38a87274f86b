"""pvtool's own ELF notes in a patched image (abi/pvtool.py): the trap sites the patch
left for the hypervisor to emulate, where the kernel keeps its virtual CPU registers,
and which code replaces which original instruction. An image without them (written
for Xen, or unpatched) has none of these."""

import struct
from dataclasses import dataclass, field

from pvtool.abi import pvtool as pvabi
from pvtool.abi.layouts import Layout
from pvtool.image.elf import ElfImage

# The notes' forms by the image's width (abi/pvtool.py): 32-bit words and entries in a
# 32-bit image, 64-bit ones in a 64-bit image (docs/ABI.md, "64-bit kernels patched by
# xen64", Notes).
WORD = {32: "I", 64: "Q"}
TRAP_SITE = {32: pvabi.TRAP_SITE, 64: pvabi.TRAP_SITE_64}
SITE_RANGE = {32: pvabi.SITE_RANGE, 64: pvabi.SITE_RANGE_64}


@dataclass(frozen=True)
class PvtoolNotes:
    trap_sites: dict[int, bytes] = field(default_factory=dict)  # int3 -> original bytes
    regs_block: int | None = None  # the kernel's VCPU_REGS
    site_ranges: tuple[tuple[int, int, int], ...] = ()  # start, end, original site


def parse_pvtool_notes(image: ElfImage) -> PvtoolNotes:
    word, pair = (struct.Struct("<" + WORD[image.bits] * n) for n in (1, 2))
    sites: dict[int, bytes] = {}
    block = None
    ranges: tuple[tuple[int, int, int], ...] = ()
    for note in image.notes:
        if note.name != pvabi.PVTOOL_NOTE_NAME:
            continue
        if note.type == pvabi.PvtoolNote.trap_sites:
            address, count = pair.unpack(note.desc[:pair.size])
            sites = _trap_sites(image, TRAP_SITE[image.bits], address, count)
        elif note.type == pvabi.PvtoolNote.vcpu_regs:
            (block,) = word.unpack(note.desc[:word.size])
        elif note.type == pvabi.PvtoolNote.site_ranges:
            ranges = _site_ranges(note.desc, SITE_RANGE[image.bits])
    return PvtoolNotes(sites, block, ranges)


def _trap_sites(image: ElfImage, entry: Layout, address: int, count: int) -> dict[int, bytes]:
    table = image.read_virtual(address, count * entry.size)
    fields = (entry.unpack(table[i:i + entry.size]) for i in range(0, len(table), entry.size))
    return {field["address"]: field["original"][:field["length"]] for field in fields}


def _site_ranges(desc: bytes, entry: Layout) -> tuple[tuple[int, int, int], ...]:
    size = entry.size
    entries = (entry.unpack(desc[i:i + size]) for i in range(0, len(desc) - size + 1, size))
    return tuple((entry["start"], entry["end"], entry["site"]) for entry in entries)
