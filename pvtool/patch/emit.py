"""Emission: turn the plans into bytes.

The image grows two sections after its last byte: .pvdata (pvdata.py) and .pvtext,
which holds the hypercall page Xen fills at boot, the glue, one stub per detour and
the trap-site table. The original code changes only inside planned ranges: in-place
replacements padded with NOPs, a `jmp` into each detour padded with int3, a lone
int3 on each trap site.
"""

from dataclasses import dataclass
from itertools import groupby

from pvtool.abi import pvtool as pvabi
from pvtool.abi import xen
from pvtool.abi.xen64 import hypercall_page_64
from pvtool.errors import PatchError
from pvtool.image import elf_format
from pvtool.image.elf import ElfImage
from pvtool.image.writer import AddedSection
from pvtool.image.xen_notes import build_xen_notes
from pvtool.patch.glue import Glue, abi_symbols, assemble_glue
from pvtool.patch.layout64 import check_reach, lay_out_64
from pvtool.patch.patchset import Action, PatchSet
from pvtool.patch.plan import STUBS_SYMBOL, Placement, Plan
from pvtool.patch.pvdata import PvData
from pvtool.patch.sites import replacement
from pvtool.x86 import paging
from pvtool.x86.isa import assemble_checked
from pvtool.x86.paging import PAGE_SIZE, page_up
from pvtool.x86.relocate import relocate

NOP, INT3 = b"\x90", b"\xcc"


@dataclass(frozen=True)
class Layout:
    pvdata: PvData
    text_base: int  # .pvtext: the hypercall page first
    glue: Glue

    @property
    def hypercall_page(self) -> int:
        return self.text_base

    def physical(self, vaddr: int) -> int:
        """Where a window address lives in the domain's frames."""
        return vaddr - self.pvdata.base + self.pvdata.phys_base


@dataclass
class Emitted:
    layout: Layout
    patches: dict[int, bytes]  # original vaddr -> new bytes
    stubs: list[tuple[Plan, int, bytes]]  # detour plan, stub address, stub code
    trap_table: bytes
    site_ranges: list[tuple[int, int, int]]  # start, end, site (abi SITE_RANGE)
    text: bytes  # .pvtext contents
    symbols: dict[str, int]

    @property
    def trap_table_address(self) -> int:
        return self.layout.text_base + len(self.text) - len(self.trap_table)


def lay_out(image: ElfImage, patch_set: PatchSet) -> tuple[Layout, dict[str, int]]:
    """Fix every address the rewrites use before any site is placed: .pvdata then
    .pvtext, linked in the glue window, loaded in the low-memory hole (docs/ABI.md);
    for a 64-bit kernel, after its image (layout64.py)."""
    if image.bits == 64:
        pvdata, text_base, glue, symbols = lay_out_64(image, patch_set)
        return Layout(pvdata, text_base, glue), symbols | glue.functions | {
            STUBS_SYMBOL: glue.end}
    hole = low_memory_hole(image)
    data_base = pvabi.glue_window(pae=False)
    pvdata = PvData(data_base, hole.base)
    text_base = page_up(data_base + pvdata.memsz)
    symbols = (abi_symbols(text_base, image.entry) | pvdata.symbols()
               | hole.identity_symbols(image.phys_offset))
    glue = assemble_glue(patch_set, text_base + PAGE_SIZE, symbols)
    return Layout(pvdata, text_base, glue), symbols | glue.functions | {STUBS_SYMBOL: glue.end}


L1_SPAN = 4 << 20  # what one 2-level L1 maps


@dataclass(frozen=True)
class LowMemoryHole:
    """The part of the PC's low-memory hole the patched kernel gets: the glue from
    its base, the identity-map tables of the PV entry (glue.asm) at its top."""

    base: int
    limit: int

    @property
    def identity_l2(self) -> int:
        return self.limit - (1 + pvabi.IDENTITY_L1_TABLES) * PAGE_SIZE

    @property
    def glue_limit(self) -> int:
        return self.identity_l2

    def identity_symbols(self, phys_offset: int) -> dict[str, int]:
        """The tables' physical addresses, and the virtual ones the PV entry writes
        them through (the builder maps the hole at VIRT_BASE + physical)."""
        l1s = self.identity_l2 + PAGE_SIZE
        # pv_identity_map links RAM again from VIRT_BASE's L2 entry: only for a VIRT_BASE
        # on a 4 MiB boundary whose RAM ends below the hypervisor (else it links the
        # identity slots twice).
        slot, misaligned = divmod(phys_offset, L1_SPAN)
        ram_end = phys_offset + pvabi.IDENTITY_L1_TABLES * L1_SPAN
        high = 0 if misaligned or ram_end > xen.HYPERVISOR_VIRT_START_2LEVEL \
            else slot * paging.entry_size(paging.PagingMode.TWO_LEVEL)
        return {"virt_base": phys_offset,
                "identity_l2": self.identity_l2 + phys_offset,
                "identity_l2_high": self.identity_l2 + phys_offset + high,
                "identity_l2_phys": self.identity_l2,
                "identity_l1s": l1s + phys_offset, "identity_l1s_phys": l1s,
                "identity_max_pages": pvabi.IDENTITY_L1_TABLES * 1024,
                "identity_pte_flags": paging.P | paging.RW | paging.A | paging.D,
                "identity_pde_flags": paging.P | paging.RW | paging.A | paging.D | paging.US}


def low_memory_hole(image: ElfImage) -> LowMemoryHole:
    """[GLUE_PHYS_BASE, GLUE_PHYS_LIMIT), ending early at a segment of the image that
    reaches into it (some kernels load their ELF headers just below 1 MiB)."""
    limit = pvabi.GLUE_PHYS_LIMIT
    for seg in image.segments:
        if seg.memsz and seg.paddr < limit and seg.paddr + seg.memsz > pvabi.GLUE_PHYS_BASE:
            limit = seg.paddr & ~(PAGE_SIZE - 1)
    hole = LowMemoryHole(pvabi.GLUE_PHYS_BASE, limit)
    if hole.glue_limit - hole.base < 4 * PAGE_SIZE:
        raise PatchError(f"{image.path}: its segments leave no room for the PV glue in the "
                         f"low-memory hole ({pvabi.GLUE_PHYS_BASE:#x}-"
                         f"{pvabi.GLUE_PHYS_LIMIT:#x})")
    return hole


TRAP_SITE = {32: pvabi.TRAP_SITE, 64: pvabi.TRAP_SITE_64}
SITE_RANGE = {32: pvabi.SITE_RANGE, 64: pvabi.SITE_RANGE_64}
HYPERCALL_PAGE = {32: xen.hypercall_page_32, 64: hypercall_page_64}


def emit(image: ElfImage, layout: Layout, plans: list[Plan],
         symbols: dict[str, int]) -> Emitted:
    patches: dict[int, bytes] = {}
    stubs: list[tuple[Plan, int, bytes]] = []
    trap_entries: list[bytes] = []
    site_ranges: list[tuple[int, int, int]] = []
    cursor = layout.glue.end
    for plan in plans:
        if plan.placement is Placement.IN_PLACE:
            patches[plan.start] = plan.code + NOP * (plan.end - plan.start - len(plan.code))
            site_ranges += [(plan.start, plan.end, site.address) for site in plan.sites]
        elif plan.placement is Placement.TRAP:
            site = plan.sites[0]
            patches[plan.start] = INT3 * (plan.end - plan.start)
            trap_entries.append(TRAP_SITE[image.bits].pack(
                address=site.address, length=site.insn.size, original=site.insn.bytes))
        elif plan.placement is Placement.DETOUR:
            stub = _stub(plan, cursor, symbols, image.bits, site_ranges)
            jump = assemble_checked(f"jmp {cursor:#x}", plan.start, image.bits)
            patches[plan.start] = jump + INT3 * (plan.end - plan.start - len(jump))
            stubs.append((plan, cursor, stub))
            cursor += len(stub)
    trap_table = b"".join(trap_entries)
    text = (HYPERCALL_PAGE[image.bits]() + layout.glue.code
            + b"".join(code for _, _, code in stubs) + trap_table)
    if image.bits == 64:
        check_reach(image, layout.text_base + len(text))
    elif layout.physical(layout.text_base) + len(text) > low_memory_hole(image).glue_limit:
        raise PatchError(f"the PV glue and stubs ({len(text)} bytes) do not fit in the "
                         "low-memory hole")
    return Emitted(layout, patches, stubs, trap_table, site_ranges, text, symbols)


def _stub(plan: Plan, address: int, symbols: dict[str, int], mode: int,
          site_ranges: list[tuple[int, int, int]]) -> bytes:
    """The window's instructions at ADDRESS: sites replaced, each run of the others
    moved (x86/relocate.py keeps their targets), then a jump back after the window.
    Each replacement's range is added to SITE_RANGES."""
    replaced = {s.address: s for s in plan.sites if s.rule.action in (Action.INLINE, Action.CALL)}
    code = bytearray()
    for is_site, group in groupby(plan.window, key=lambda insn: insn.address in replaced):
        run = list(group)
        if is_site:
            for insn in run:
                statements = replacement(replaced[insn.address], symbols)
                here = address + len(code)
                code += assemble_checked("\n".join(statements), here, mode) \
                    if statements else b""
                site_ranges.append((here, address + len(code), insn.address))
        else:
            moved = b"".join(insn.bytes for insn in run)
            code += relocate(moved, run[0].address, address + len(code), mode)
    code += assemble_checked(f"jmp {plan.end:#x}", address + len(code), mode)
    return bytes(code)


def added_sections(emitted: Emitted) -> list[AddedSection]:
    layout = emitted.layout
    data = layout.pvdata
    return [
        AddedSection(".pvdata", data.base, data.contents(), data.memsz,
                     elf_format.PF_R | elf_format.PF_W, paddr=data.phys_base),
        AddedSection(".pvtext", layout.text_base, emitted.text, len(emitted.text),
                     elf_format.PF_R | elf_format.PF_X,
                     paddr=layout.physical(layout.text_base)),
    ]


def notes(image: ElfImage, emitted: Emitted, patch_set: PatchSet) -> bytes:
    """Xen's notes (so the domain builder boots it) and pvtool's (trap sites, the
    virtual-CPU register block, the replaced sites' ranges)."""
    layout = emitted.layout
    bits = image.bits
    xen_notes = build_xen_notes([
        (xen.ElfNote.guest_os, patch_set.guest_os),
        (xen.ElfNote.guest_version, image.path.name),
        (xen.ElfNote.xen_version, "xen-3.0"),
        (xen.ElfNote.loader, "generic"),
        (xen.ElfNote.virt_base, image.phys_offset),
        (xen.ElfNote.entry, emitted.symbols["pv_entry"]),
        (xen.ElfNote.hypercall_page, layout.hypercall_page),
        # a 64-bit kernel's paging is 4-level, which Xen's notes spell as Linux's
        # 64-bit xen-head.S does (XEN-ABI64.md 1.8)
        (xen.ElfNote.pae_mode, "yes" if bits == 64 else "no"),
    ], image.elf_class)
    count = len(emitted.trap_table) // TRAP_SITE[bits].size
    word = bits // 8
    table = (emitted.trap_table_address.to_bytes(word, "little") + count.to_bytes(word, "little")
             if bits == 64 else (emitted.trap_table_address | count << 32).to_bytes(8, "little"))
    pvtool_notes = (
        elf_format.pack_note(pvabi.PVTOOL_NOTE_NAME, pvabi.PvtoolNote.trap_sites, table)
        + elf_format.pack_note(pvabi.PVTOOL_NOTE_NAME, pvabi.PvtoolNote.vcpu_regs,
                               emitted.symbols["regs_cr0"].to_bytes(word, "little"))
        + elf_format.pack_note(pvabi.PVTOOL_NOTE_NAME, pvabi.PvtoolNote.site_ranges,
                               b"".join(SITE_RANGE[bits].pack(start=start, end=end, site=site)
                                        for start, end, site in emitted.site_ranges)))
    return xen_notes + pvtool_notes
