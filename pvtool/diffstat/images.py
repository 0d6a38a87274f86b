"""The listing diff of two images, made in memory: `pvtool diffstat ORIG.elf PATCHED.elf`.

It is the diff `pvtool patch` writes beside its output, rebuilt from the images alone
with the patcher's own pieces (patch/pipeline's code discovery, patch/listing's
listings and diff), so the two agree line for line on an image pvtool patched:
- the original listing is every instruction code discovery finds in ORIG;
- the patched listing is that listing with each run of instructions whose bytes
  PATCHED changed decoded afresh from PATCHED;
- after it comes the code PATCHED adds in new executable segments: its .pvtext without
  the hypercall page (Xen's HYPERCALL_PAGE note) and the trap-site table (pvtool's
  note), i.e. the glue and the detour stubs.
Glue functions are named from the patch set (default xen32) when its glue, laid out for
ORIG as the patcher lays it out, is byte for byte what PATCHED holds; stubs are named
pv_stub_N in address order, found as the targets of the jumps that replaced sites.
An image pvtool did not patch still gets a listing diff, with its added code named
after the segment that holds it.
"""

from pathlib import Path

from pvtool.abi import pvtool as pvabi
from pvtool.errors import ImageError, PvtoolError, UnsupportedImageError
from pvtool.image.elf import ElfImage, load_elf
from pvtool.image.xen_notes import parse_xen_notes
from pvtool.patch.byte_changes import differing_spans
from pvtool.patch.emit import lay_out
from pvtool.patch.listing import Change, Listing, Symbolizer, decode_listing, unified_diff
from pvtool.patch.patchset import DEFAULT_PATCH_SETS, load_patch_set
from pvtool.patch.pipeline import discover_code
from pvtool.x86.isa import MAX_INSN_SIZE, decode_all
from pvtool.x86.paging import PAGE_SIZE

STUB_NAME = "pv_stub_{}"


def listing_diff(original_path: Path, patched_path: Path,
                 patch_set: str | None = None) -> str:
    """The listing diff of PATCHED against ORIGINAL, both 32-bit or both 64-bit; the
    glue is named after PATCH_SET (by default the automatic port for their width)."""
    original, patched = (load_elf(Path(path)) for path in (original_path, patched_path))
    if original.bits != patched.bits:
        raise UnsupportedImageError(f"{patched.path}: a {patched.bits}-bit image, not a "
                                    f"patched copy of the {original.bits}-bit {original.path}")
    patch_set = patch_set or DEFAULT_PATCH_SETS[original.bits]
    kernel = [(s.value, s.name) for s in original.function_symbols()]
    listing = Listing(discover_code(original), Symbolizer(kernel))
    changed = _changed_runs(listing, original, patched)
    added_start, added = _added_code(original, patched)
    names = list(kernel)
    if added:
        glue, glue_end = _glue_functions(original, patched, patch_set, added_start)
        names += [(address, name) for name, address in glue.items()] or [
            (added_start, "added")]
        names += _stub_names(changed, patched, glue_end, added_start + len(added))
    symbolize = Symbolizer(names)
    changes = [Change(start, end, decode_listing(patched.read_virtual(start, end - start),
                                                 start, symbolize, patched.bits))
               for start, end in changed]
    added_lines = decode_listing(added, added_start, symbolize, patched.bits) if added else []
    return unified_diff(listing, changes, added_lines, str(original.path), str(patched.path))


def _changed_runs(listing: Listing, original: ElfImage,
                  patched: ElfImage) -> list[tuple[int, int]]:
    """[start, end) of each run of adjacent listed items whose bytes PATCHED changed,
    found from where the segments' bytes differ (a few places among megabytes)."""
    changed = set()
    for seg in original.segments:
        try:
            now = patched.read_virtual(seg.vaddr, seg.filesz)
        except ImageError:
            raise ImageError(f"{patched.path}: does not map {original.path}'s code at "
                             f"{seg.vaddr:#x}: not a patched copy of it") from None
        before = original.data[seg.offset:seg.offset + seg.filesz]
        for lo, hi in differing_spans(before, now):
            first = listing.index(seg.vaddr + lo - MAX_INSN_SIZE + 1)
            for item in map(listing.item, range(first, listing.index(seg.vaddr + hi))):
                if item.address + item.size > seg.vaddr + lo:
                    changed.add((item.address, item.address + item.size))
    runs: list[tuple[int, int]] = []
    for start, end in sorted(changed):
        if runs and start < runs[-1][1]:  # grown over this one
            start, end = runs[-1][0], max(end, runs.pop()[1])
        runs.append((start, _patched_end(start, end, listing, patched)))
    return runs


def _patched_end(start: int, end: int, listing: Listing, patched: ElfImage) -> int:
    """END, or later: where PATCHED's instructions from START end on a listed item's
    end. A byte a rewrite left as it was (a jump's displacement that equals the
    original byte) must not cut the new instruction that holds it in two."""
    seg = patched.segment_at(start)
    while True:
        at = start
        data = patched.read_virtual(start, min(end - start + MAX_INSN_SIZE, seg.end - start))
        for item in decode_all(data, start, patched.bits):
            at = item.address + item.size
            if at >= end:
                break
        if at <= end:
            return end
        held = listing.item(listing.index(at) - 1)  # the listed item holding byte at - 1
        end = max(at, held.address + held.size)


def _added_code(original: ElfImage, patched: ElfImage) -> tuple[int, bytes]:
    """The first executable segment PATCHED has where ORIG maps nothing, without the
    hypercall page before the glue and the trap-site table after the stubs."""
    for seg in patched.segments:
        if not (seg.executable and seg.filesz) or any(
                o.vaddr < seg.vaddr + seg.memsz and seg.vaddr < o.end
                for o in original.segments if o.memsz):
            continue
        start, end = seg.vaddr, seg.vaddr + seg.filesz
        notes = parse_xen_notes(patched)
        if notes is not None and notes.hypercall_page == start:
            start += PAGE_SIZE
        table = _trap_table(patched)
        if table is not None and start <= table <= end:
            end = table
        return start, patched.read_virtual(start, max(end - start, 0))
    return 0, b""


def _trap_table(patched: ElfImage) -> int | None:
    """The trap-site table's address: the note's first word (u32, or u64 in a 64-bit
    image: docs/ABI.md)."""
    word = patched.bits // 8
    for note in patched.notes:
        if note.name == pvabi.PVTOOL_NOTE_NAME and note.type == pvabi.PvtoolNote.trap_sites:
            return int.from_bytes(note.desc[:word], "little")
    return None


def _glue_functions(original: ElfImage, patched: ElfImage, patch_set: str,
                    start: int) -> tuple[dict[str, int], int]:
    """The patch set's glue functions and where the glue ends, if PATCHED holds that
    very glue at START; else none, ending at START."""
    try:
        glue = lay_out(original, load_patch_set(patch_set))[0].glue
        if glue.base == start and patched.read_virtual(start, len(glue.code)) == glue.code:
            return dict(glue.functions), glue.end
    except PvtoolError:
        pass
    return {}, start


def _stub_names(changed, patched: ElfImage, glue_end: int,
                added_end: int) -> list[tuple[int, str]]:
    """pv_stub_N at each address a rewritten site jumps to past the glue."""
    targets = set()
    for start, end in changed:
        for insn in decode_all(patched.read_virtual(start, end - start), start,
                               patched.bits):
            if getattr(insn, "mnemonic", "") == "jmp" and insn.op_str.startswith("0x"):
                target = int(insn.op_str, 16)
                if glue_end <= target < added_end:
                    targets.add(target)
    return [(address, STUB_NAME.format(n)) for n, address in enumerate(sorted(targets))]
