"""Where a patched 64-bit kernel's added sections go: high, past the RAM it manages.

A kernel hands out the RAM after its image as free pages (minikern64's kinit fills
every page from `end` to its PHYSTOP), so the glue's data cannot follow the image.
.pvdata and .pvtext are linked at VIRT_BASE + GLUE_PHYS, GLUE_PHYS the first 2 MiB
boundary at or above 16 MiB past the image, and loaded at that physical address: the
domain builder maps them with the kernel (XEN-ABI64.md 1.8, "Mapping") and puts its
own tables after them, and the PV entry reports the RAM below GLUE_PHYS only
(mem_upper), so the kernel never takes their pages. A 2 MiB boundary lets pv_write_cr3
give a kernel-built L4 the glue's range as one L1 (glue.asm). A detour is `jmp rel32`,
and the glue is called with `call rel32`: both reach +-2 GiB. A kernel whose code and
the added sections span more than rel32's reach, whose sections need more than 2 MiB,
or that ends where the sections would leave the canonical lower half or enter Xen's
range, is refused.
"""

from dataclasses import replace

from pvtool.abi import xen64
from pvtool.errors import PatchError
from pvtool.image.elf import ElfImage
from pvtool.patch.code_space import rewritable_code
from pvtool.patch.glue import Glue, abi_symbols_64, assemble_glue
from pvtool.patch.patchset import PatchSet
from pvtool.patch.pvdata64 import IDENTITY_PAGES, PvData64
from pvtool.x86.paging import CANONICAL_LOW_END, PAGE_SIZE, page_up

REL32_REACH = 1 << 31
L3_SPAN = 1 << 30  # what one L3 entry maps
L2_SPAN = 1 << 21  # what one L2 entry maps: the glue's range is one L1
GLUE_PHYS_MIN = 16 << 20  # above the 8-16 MiB a small kernel manages


def glue_phys(image: ElfImage) -> int:
    """The physical address of .pvdata: the first 2 MiB boundary at or above 16 MiB
    past the image, within the PV entry's identity map (its L1s serve the glue's
    range: glue.asm pv_glue_range)."""
    image_end = page_up(image.end_vaddr) - image.phys_offset
    return max(GLUE_PHYS_MIN, -(-image_end // L2_SPAN) * L2_SPAN)


def lay_out_64(image: ElfImage, patch_set: PatchSet) -> tuple[PvData64, int, Glue, dict]:
    """.pvdata at glue_phys, .pvtext after it (the hypercall page first, then the
    glue): the sections, the text base and the symbols the rewrites use."""
    if image.phys_offset % L3_SPAN:
        raise PatchError(f"{image.path}: VIRT_BASE (vaddr - paddr) {image.phys_offset:#x} "
                         "is not on a 1 GiB boundary: the PV entry maps the kernel's "
                         "link range with one L3 entry")
    phys = glue_phys(image)
    data_base = image.phys_offset + phys
    pvdata = PvData64(data_base, phys)
    text_base = page_up(data_base + pvdata.memsz)
    check_reach(image, text_base + PAGE_SIZE)
    symbols = abi_symbols_64(text_base, image.entry, pvdata.base) | pvdata.symbols() | {
        "virt_base": image.phys_offset,
        "glue_mem_upper": (phys >> 10) - 1024,
        "glue_phys": phys,
        "glue_l1_table": phys // L2_SPAN,
        "glue_l2_slot": data_base >> 21 & 511,
        "m2p": xen64.RO_MPT_VIRT_START_64,
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
    linked low is not: code_space._legacy_entry), lie outside the guest's part of the
    address space, or need more than the one L1 (2 MiB) pv_write_cr3 gives them."""
    lowest = min((start for start, _ in rewritable_code(image)),
                 default=min(s.vaddr for s in image.segments))
    if end - lowest > REL32_REACH:
        raise PatchError(f"{image.path}: its code from {lowest:#x} and the PV sections "
                         f"up to {end:#x} span more than 2 GiB, the "
                         "reach of a detour's rel32 jump")
    phys = glue_phys(image)
    if phys + L2_SPAN > IDENTITY_PAGES * PAGE_SIZE:
        raise PatchError(f"{image.path}: the image ends past physical {phys:#x}, beyond "
                         f"the {IDENTITY_PAGES * PAGE_SIZE >> 20} MiB the PV entry maps")
    start = image.phys_offset + phys
    if end - start > L2_SPAN:
        raise PatchError(f"{image.path}: the PV sections ({start:#x}-{end:#x}) need more "
                         "than 2 MiB, the range one L1 maps in a kernel-built L4")
    if start < CANONICAL_LOW_END < end or start < xen64.HYPERVISOR_VIRT_END_64 and \
            end > xen64.HYPERVISOR_VIRT_START_64 or end > 1 << 64:
        raise PatchError(f"{image.path}: the PV sections "
                         f"({start:#x}-{end:#x}) would leave the canonical lower half, "
                         "enter Xen's range or pass the top of the address space")
