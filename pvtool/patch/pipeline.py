"""`pvtool patch`: load -> discover code -> find sites -> plan -> emit -> verify -> write.

Nothing is written unless every step succeeds: the image is verified in its temporary
file before it is renamed into place, and the listing diff and report follow it.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from pvtool.abi import pvtool as pvabi
from pvtool.errors import OutputError, PatchError, UnsupportedImageError
from pvtool.image.elf import ElfImage, load_elf
from pvtool.image.writer import (
    check_destination,
    check_output_file,
    write_atomically,
    write_patched_elf,
)
from pvtool.image.xen_notes import parse_xen_notes
from pvtool.interrupts import held
from pvtool.machine.loader import image_at
from pvtool.patch.code_space import code_regions, data_in_code, data_regions, entry_address
from pvtool.patch.discover import CodeMap, discover
from pvtool.patch.emit import Emitted, added_sections, emit, lay_out, notes
from pvtool.patch.listing import Change, Listing, Symbolizer, decode_listing, unified_diff
from pvtool.patch.patchset import DEFAULT_PATCH_SETS, PatchSet, load_patch_set
from pvtool.patch.plan import Plan, changed_ranges, plan_sites
from pvtool.patch.report import PatchReport
from pvtool.patch.sites import find_sites
from pvtool.patch.verify import verify


@dataclass(frozen=True)
class Outputs:
    image: Path
    diff: Path
    report: Path

    @classmethod
    def beside(cls, out: Path) -> "Outputs":
        """OUT, and its listing diff and JSON report named after it."""
        return cls(out, out.with_suffix(".diff"), out.with_suffix(".json"))

    def paths(self) -> tuple[Path, Path, Path]:
        return self.image, self.diff, self.report


def patch_image(input_path: Path, out: Path, patch_set_name: str | None = None) -> PatchReport:
    """Patch the kernel at INPUT_PATH with PATCH_SET_NAME (by default the automatic
    port for its width: xen32 or xen64) into OUT, its listing diff and its report."""
    image = load_elf(input_path)
    check_output_file(Path(out))  # before Outputs names its siblings (`-o .` has none)
    outputs = Outputs.beside(Path(out))
    _check_outputs(image, outputs)
    if parse_xen_notes(image) is not None:
        raise UnsupportedImageError(f"{input_path}: already has Xen notes (already "
                                    "paravirtualized?)")
    _check_phys_offset(input_path, image)
    patch_set = _patch_set_for(image, patch_set_name)
    code = discover_code(image)
    layout, symbols = lay_out(image, patch_set)  # refuses segments in the low-memory hole
    _check_above_conventional_memory(input_path, image)
    plans = plan_sites(find_sites(code, patch_set), code, symbols)
    emitted = emit(image, layout, plans, symbols)
    checks: list[str] = []
    verified: list[ElfImage] = []  # the image as written, read back once

    def check(patched: ElfImage) -> None:
        checks.extend(verify(image, patched, code, plans, emitted))
        verified.append(patched)

    before = {path: _identity(path) for path in outputs.paths()}
    try:  # no partial output: the image goes if its diff or report cannot follow it
        write_patched_elf(image, outputs.image, patches=emitted.patches,
                          added=added_sections(emitted),
                          notes=notes(image, emitted, patch_set), check=check)
        diff = listing_diff(image, verified[0], code, plans, emitted, outputs.image)
        report = PatchReport.build(image, outputs.image, patch_set, code, plans, emitted,
                                   checks, diff_path=outputs.diff, report_path=outputs.report)
        write_atomically(outputs.diff, diff.encode())
        write_atomically(outputs.report,
                         (json.dumps(report.to_dict(), indent=2) + "\n").encode())
    except BaseException:
        with held():  # a second Ctrl-C waits until the cleanup is done
            _remove_new(before)
        raise
    return report


def _patch_set_for(image: ElfImage, name: str | None) -> PatchSet:
    """The patch set NAME (default: the one for IMAGE's width), if it patches kernels
    of IMAGE's width."""
    patch_set = load_patch_set(name or DEFAULT_PATCH_SETS[image.bits])
    if patch_set.mode != image.bits:
        raise UnsupportedImageError(
            f"{image.path}: a {image.bits}-bit kernel, but patch set {patch_set.name} "
            f"patches {patch_set.mode}-bit kernels (use "
            f"--patch-set {DEFAULT_PATCH_SETS[image.bits]})")
    return patch_set


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file PATH is now (device and inode), or None if there is none."""
    try:
        found = path.stat()
    except OSError:  # none there (or none that can be read: _check_outputs refused it)
        return None
    return found.st_dev, found.st_ino


def _remove_new(before: dict[Path, tuple[int, int] | None]) -> None:
    """Remove each output that is no longer the file it was before the writing began:
    one this run renamed into place (a new inode), however far the run got, even a
    signal landing just after the rename. An older output left untouched stays."""
    for path, identity in before.items():
        if _identity(path) != identity:
            path.unlink(missing_ok=True)


def discover_code(image: ElfImage) -> CodeMap:
    """Recursive disassembly from the entry, every function symbol and every pointer to
    code, plus a sweep of every other executable byte; the bytes that may be code, and
    the data inside them, as code_space.py decides."""
    return discover(code_regions(image), [entry_address(image)], mode=image.bits,
                    data_regions=data_regions(image),
                    symbols=[s.value for s in image.function_symbols()],
                    data_in_code=[(d.start, d.end) for d in data_in_code(image)])


def listing_diff(image: ElfImage, patched: ElfImage, code: CodeMap, plans: list[Plan],
                 emitted: Emitted, patched_path: Path) -> str:
    kernel = [(s.value, s.name) for s in image.function_symbols()]
    glue = emitted.layout.glue
    symbolize = Symbolizer([*kernel, *((a, n) for n, a in glue.functions.items()),
                            *((address, f"pv_stub_{n}")
                              for n, (_, address, _) in enumerate(emitted.stubs))])
    changes = [Change(start, end, decode_listing(patched.read_virtual(start, end - start),
                                                 start, symbolize, patched.bits))
               for start, end in changed_ranges(plans)]
    added = decode_listing(emitted.text[glue.base - emitted.layout.text_base:
                                        len(emitted.text) - len(emitted.trap_table)],
                           glue.base, symbolize, patched.bits)
    return unified_diff(Listing(code, Symbolizer(kernel)), changes, added, str(image.path),
                        str(patched_path))


def _check_phys_offset(input_path: Path, image: ElfImage) -> None:
    """Xen's VIRT_BASE is the image's vaddr - paddr (ElfImage.phys_offset), which the
    patched image's notes and new segments follow: a highest segment loaded above its
    own virtual address gives no such base."""
    if image.phys_offset < 0:
        last = max(image.segments, key=lambda s: s.vaddr)
        raise PatchError(f"{input_path}: its highest segment is linked at {last.vaddr:#x} "
                         f"but loaded at {last.paddr:#x}, above it: there is no Xen "
                         "VIRT_BASE (vaddr - paddr) for it")


def _check_above_conventional_memory(input_path: Path, image: ElfImage) -> None:
    """Kernels are loaded from 1 MiB up, as GRUB's Multiboot loader requires ("Loading
    below 1MB is not supported"): below the low-memory hole, whose own rule is
    low_memory_hole's, lie the real-mode IVT, the BIOS data area and the EBDA."""
    for seg in image.segments:
        if seg.memsz and seg.paddr < pvabi.GLUE_PHYS_BASE:
            raise UnsupportedImageError(
                f"{image_at(input_path, seg.paddr, seg.memsz)} lies below 1 MiB; pvtool "
                "patch takes kernels loaded from 1 MiB up")


def _check_outputs(image: ElfImage, outputs: Outputs) -> None:
    source = Path(image.path).resolve()
    paths = (outputs.image, outputs.diff, outputs.report)
    if len({path.resolve() for path in paths}) < len(paths):
        raise OutputError(f"{outputs.image}: its listing diff or report would overwrite it "
                          "(name it without .diff or .json)")
    for path in paths:
        if path.resolve() == source:
            raise OutputError(f"{path}: refusing to overwrite the input image")
        if path.is_dir():
            raise OutputError(f"{path}: is a directory")
    check_destination(image, outputs.image)
