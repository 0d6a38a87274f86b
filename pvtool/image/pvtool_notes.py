"""pvtool's own ELF notes in a patched image (abi/pvtool.py): the trap sites the patch
left for the hypervisor to emulate, where the kernel keeps its virtual CPU registers,
and which code replaces which original instruction. An image without them (written
for Xen, or unpatched) has none of these."""

import struct
from dataclasses import dataclass, field

from pvtool.abi import pvtool as pvabi
from pvtool.abi.pvtool import SITE_RANGE, TRAP_SITE
from pvtool.image.elf import ElfImage


@dataclass(frozen=True)
class PvtoolNotes:
    trap_sites: dict[int, bytes] = field(default_factory=dict)  # int3 -> original bytes
    regs_block: int | None = None  # the kernel's VCPU_REGS
    site_ranges: tuple[tuple[int, int, int], ...] = ()  # start, end, original site


def parse_pvtool_notes(image: ElfImage) -> PvtoolNotes:
    sites: dict[int, bytes] = {}
    block = None
    ranges: tuple[tuple[int, int, int], ...] = ()
    for note in image.notes:
        if note.name != pvabi.PVTOOL_NOTE_NAME:
            continue
        if note.type == pvabi.PvtoolNote.trap_sites:
            address, count = struct.unpack("<II", note.desc[:8])
            table = image.read_virtual(address, count * TRAP_SITE.size)
            for i in range(count):
                entry = TRAP_SITE.unpack(table[i * TRAP_SITE.size:(i + 1) * TRAP_SITE.size])
                sites[entry["address"]] = entry["original"][:entry["length"]]
        elif note.type == pvabi.PvtoolNote.vcpu_regs:
            (block,) = struct.unpack("<I", note.desc[:4])
        elif note.type == pvabi.PvtoolNote.site_ranges:
            ranges = _site_ranges(note.desc)
    return PvtoolNotes(sites, block, ranges)


def _site_ranges(desc: bytes) -> tuple[tuple[int, int, int], ...]:
    size = SITE_RANGE.size
    entries = (SITE_RANGE.unpack(desc[i:i + size]) for i in range(0, len(desc) - size + 1, size))
    return tuple((entry["start"], entry["end"], entry["site"]) for entry in entries)
