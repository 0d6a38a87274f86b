"""Where a patched 64-bit kernel's added sections go: right after its image.

A detour is `jmp rel32`, and the glue is called with `call rel32`: both reach +-2 GiB.
So .pvdata and .pvtext are linked on the first page boundary after the kernel's last
segment and loaded at the same offset from VIRT_BASE (vaddr - paddr) as the kernel,
which keeps them inside the range the domain builder maps with the kernel
(XEN-ABI64.md 1.8, "Mapping") and inside any mapping the kernel makes of its own link
range. A kernel whose code and the sections after it span more than rel32's reach, or
that ends where the sections would leave the canonical lower half or enter Xen's range,
is refused.
"""

from dataclasses import replace

from pvtool.abi import xen64
from pvtool.errors import PatchError
from pvtool.image.elf import ElfImage
from pvtool.patch.code_space import rewritable_code
from pvtool.patch.glue import Glue, abi_symbols_64, assemble_glue
from pvtool.patch.patchset import PatchSet
from pvtool.patch.pvdata64 import PvData64
from pvtool.x86.paging import CANONICAL_LOW_END, PAGE_SIZE, page_up

REL32_REACH = 1 << 31
L3_SPAN = 1 << 30  # what one L3 entry maps


def lay_out_64(image: ElfImage, patch_set: PatchSet) -> tuple[PvData64, int, Glue, dict]:
    """.pvdata after the image, .pvtext after it (the hypercall page first, then the
    glue): the sections, the text base and the symbols the rewrites use."""
    if image.phys_offset % L3_SPAN:
        raise PatchError(f"{image.path}: VIRT_BASE (vaddr - paddr) {image.phys_offset:#x} "
                         "is not on a 1 GiB boundary: the PV entry maps the kernel's "
                         "link range with one L3 entry")
    data_base = page_up(image.end_vaddr)
    pvdata = PvData64(data_base, data_base - image.phys_offset)
    text_base = page_up(data_base + pvdata.memsz)
    check_reach(image, text_base + PAGE_SIZE)
    symbols = abi_symbols_64(text_base, image.entry, pvdata.base) | pvdata.symbols() | {
        "virt_base": image.phys_offset,
        "link_l4_slot": image.phys_offset >> 39 & 511,
        "link_l3_slot": image.phys_offset >> 30 & 511}
    glue = assemble_glue(with_trap_entries(patch_set), text_base + PAGE_SIZE, symbols)
    return pvdata, text_base, glue, symbols


TRAP_ENTRIES = "pv_trap_entries"
VECTORS = 256


def with_trap_entries(patch_set: PatchSet) -> PatchSet:
    """PATCH_SET's glue and, generated after it, pv_trap_entries: a `call
    pv_trap_common` per vector, each 5 bytes, where pv_lidt points the trap table, so
    that pv_trap_common can tell the vector from its return address (the glue says
    why it must). Only a patch set whose glue has pv_trap_common gets them."""
    if "pv_trap_common" not in patch_set.glue:
        return patch_set
    entries = "\n".join(["call {pv_trap_common}"] * VECTORS)
    return replace(patch_set, glue={**patch_set.glue, TRAP_ENTRIES: entries})


def check_reach(image: ElfImage, end: int) -> None:
    """Refuse a layout whose added sections, ending at END, cannot be reached with a
    rel32 from every byte of the code a rewrite may change (a 32-bit Multiboot stub
    linked low is not: code_space._legacy_entry), or lie outside the guest's part of
    the address space."""
    lowest = min((start for start, _ in rewritable_code(image)),
                 default=min(s.vaddr for s in image.segments))
    if end - lowest > REL32_REACH:
        raise PatchError(f"{image.path}: its code from {lowest:#x} and the PV sections "
                         f"after the image up to {end:#x} span more than 2 GiB, the "
                         "reach of a detour's rel32 jump")
    start = page_up(image.end_vaddr)
    if start < CANONICAL_LOW_END < end or start < xen64.HYPERVISOR_VIRT_END_64 and \
            end > xen64.HYPERVISOR_VIRT_START_64 or end > 1 << 64:
        raise PatchError(f"{image.path}: the PV sections after the image "
                         f"({start:#x}-{end:#x}) would leave the canonical lower half, "
                         "enter Xen's range or pass the top of the address space")
