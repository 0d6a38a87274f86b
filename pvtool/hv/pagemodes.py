"""What each paging mode adds to its format when the hypervisor validates a domain's
page tables: one row per mode. The format itself (entry size, entries per table,
levels, address and reserved bits) is x86/paging.py's; the validator (hv/validator.py)
reads both.

The 4-level row is Xen's x86-64 PV rules (xen/arch/x86/mm.c, pv/mm.h; XEN-ABI64.md
1.8): the guest kernel runs at CPL 3, so every entry it installs gets the user bit
(adjust_guest_lNe), its own L1 pages are marked _PAGE_GUEST_KERNEL and only its user
pages may be global; a guest may set only the bits of Xen's base_disallow_mask, with
no cache attributes (a domU has no I/O memory) and no superpages.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace

from pvtool.abi.xen import PAE_L3_ALLOWED_FLAGS, PAE_XEN_L3_SLOT
from pvtool.abi.xen64 import (
    HYPERVISOR_VIRT_END_64,
    HYPERVISOR_VIRT_START_64,
    PAGE_GUEST_KERNEL,
    XEN_L4_SLOTS,
)
from pvtool.hv import layout, layout64
from pvtool.machine.ioapic import IOAPIC_BASE
from pvtool.machine.lapic import APIC_BASE
from pvtool.x86 import paging
from pvtool.x86.paging import PagingMode


@dataclass(frozen=True)
class PagingRules:
    mode: PagingMode
    name: str  # for messages: "a 2-level domain has no level-3 tables"
    hypervisor_start: int  # the hypervisor's range starts here
    # [start, end) ranges of the addresses the guest may map and point the hypervisor
    # at (Xen's access_ok): below the hypervisor, and on 4-level also above it.
    guest_ranges: tuple[tuple[int, int], ...]
    # The hypervisor's slots, which it writes and the guest never may: in every table
    # of HYPERVISOR_LEVEL when HYPERVISOR_VIA is None, else only in the one under that
    # slot of the top-level table, which may then appear nowhere else (Xen's
    # PGT_pae_xen_l2).
    hypervisor_level: int
    hypervisor_slots: range
    hypervisor_via: int | None
    hypervisor_entries: Callable[[bool], dict[int, int]]  # (glue window?) -> slot: entry
    # A top-level slot may point back at its own table, read-only: a linear page table
    # (Xen's get_linear_pagetable).
    linear_mapping: bool
    # An unmodified kernel maps its own page tables writable: such mappings found when a
    # base is validated or a kernel's store is emulated are installed read-only instead
    # of refused (docs/ABI.md). Explicit requests and pins are refused either way.
    downgrade: bool
    # Flags a top-level entry may carry; None: whatever the format allows.
    top_allowed_flags: int | None = None
    # Whether a domain that opts in may use large pages (hv/superpages.py: 4 MiB
    # pages are split; PAE domains are written for Xen and get its refusal).
    superpages: bool = False
    # Level -> the flag bits a guest may set in an entry (the address bits aside);
    # None: whatever the format allows, without NX (EFER.NXE off).
    guest_flags: dict[int, int] | None = None
    # (level, present entry) -> the entry as installed; None: as the guest wrote it.
    adjust: Callable[[int, int], int] | None = None
    # Whether user mode runs on a top-level table of its own (Xen's guest_table_user).
    user_base: bool = False
    # The levels of the tables whose kernel stores are emulated (writable page tables,
    # hv/ptwr.py); None: every level.
    ptwr_levels: frozenset[int] | None = None

    @property
    def levels(self) -> int:
        return paging.levels(self.mode)

    def is_guest_range(self, vaddr: int, size: int) -> bool:
        return any(start <= vaddr and vaddr + size <= end for start, end in self.guest_ranges)


TWO_LEVEL = PagingRules(
    mode=PagingMode.TWO_LEVEL, name="2-level",
    hypervisor_start=layout.BASE,
    guest_ranges=((0, layout.BASE),),
    hypervisor_level=2,
    hypervisor_slots=range(layout.FIRST_SLOT, paging.entry_count(PagingMode.TWO_LEVEL, 2)),
    hypervisor_via=None,
    hypervisor_entries=lambda glue: layout.hypervisor_slots(glue).entries,
    linear_mapping=True, downgrade=True, superpages=True)

PAE = PagingRules(
    mode=PagingMode.PAE, name="PAE",
    hypervisor_start=layout.PAE_BASE,
    guest_ranges=((0, layout.PAE_BASE),),
    hypervisor_level=2,
    hypervisor_slots=range(layout.PAE_FIRST_SLOT, paging.entry_count(PagingMode.PAE, 2)),
    hypervisor_via=PAE_XEN_L3_SLOT,
    hypervisor_entries=lambda glue: layout.pae_hypervisor_slots().entries,
    linear_mapping=False, downgrade=False,
    top_allowed_flags=PAE_L3_ALLOWED_FLAGS)

# Xen's base_disallow_mask inverted: P, RW, US, A, D, the software bits 9-11 and
# 52-62, NX; G too in an L1 (L1_DISALLOW_MASK).
_GUEST_FLAGS_64 = (paging.P | paging.RW | paging.US | paging.A | paging.D | 0xE00
                   | 0x7FF << 52 | paging.NX)


def adjust_entry_64(level: int, entry: int) -> int:
    """Xen's adjust_guest_l{1,2,3,4}e for a 64-bit PV guest (pv/mm.h): an L1 entry the
    kernel left without US is its own page (US and _PAGE_GUEST_KERNEL), any other one
    a user page, made global; upper entries get US, and an L4 entry A."""
    if level == 1:
        if not entry & paging.US:
            entry |= paging.US | PAGE_GUEST_KERNEL
        if not entry & PAGE_GUEST_KERNEL:
            entry |= paging.G
        return entry
    return entry | paging.US | (paging.A if level == 4 else 0)


FOUR_LEVEL = PagingRules(
    mode=PagingMode.FOUR_LEVEL, name="4-level",
    hypervisor_start=HYPERVISOR_VIRT_START_64,
    guest_ranges=((0, paging.CANONICAL_LOW_END), (HYPERVISOR_VIRT_END_64, 1 << 64)),
    hypervisor_level=4,
    hypervisor_slots=XEN_L4_SLOTS,
    hypervisor_via=None,
    hypervisor_entries=lambda glue: layout64.xen_l4_entries(),
    linear_mapping=True, downgrade=False,
    guest_flags={1: _GUEST_FLAGS_64 | paging.G, 2: _GUEST_FLAGS_64, 3: _GUEST_FLAGS_64,
                 4: _GUEST_FLAGS_64},
    adjust=adjust_entry_64, user_base=True, ptwr_levels=frozenset({1}))

RULES = {rules.mode: rules for rules in (TWO_LEVEL, PAE, FOUR_LEVEL)}

# A deprivileged PC kernel's rules: a 64-bit kernel written for the PC, run at CPL 3
# unmodified (trap-and-emulate) or patched by xen64 (PV). Xen's 4-level rules, but such
# a kernel maps its own tables writable (downgraded, as on 32-bit), stores into tables
# of every level (each emulated and validated, hv/ptwr.py), and maps the PC's device
# pages uncached: it has I/O privilege, and Xen lets such a domain set the cache
# attributes.
_DEVICE_FLAGS = paging.PCD | paging.PWT
PC_KERNEL_FOUR_LEVEL = replace(
    FOUR_LEVEL, downgrade=True, ptwr_levels=None,
    guest_flags={level: flags | _DEVICE_FLAGS
                 for level, flags in FOUR_LEVEL.guest_flags.items()})
# The PC's device pages such a kernel maps (its local APIC and I/O APIC), shared with
# its domain: pvtool's extension for a PC kernel with I/O privilege (docs/ABI.md).
DEVICE_PAGES = (APIC_BASE, IOAPIC_BASE)
