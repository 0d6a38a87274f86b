"""What each paging mode adds to its format when the hypervisor validates a domain's
page tables: one row per mode. The format itself (entry size, entries per table,
levels, address and reserved bits) is x86/paging.py's; the validator (hv/validator.py)
reads both, so 4-level paging will be one more row here.
"""

from collections.abc import Callable
from dataclasses import dataclass

from pvtool.abi.xen import PAE_L3_ALLOWED_FLAGS, PAE_XEN_L3_SLOT
from pvtool.hv import layout
from pvtool.x86 import paging
from pvtool.x86.paging import PagingMode


@dataclass(frozen=True)
class PagingRules:
    mode: PagingMode
    name: str  # for messages: "a 2-level domain has no level-3 tables"
    hypervisor_start: int  # the guest's addresses end here
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

    @property
    def levels(self) -> int:
        return paging.levels(self.mode)


TWO_LEVEL = PagingRules(
    mode=PagingMode.TWO_LEVEL, name="2-level",
    hypervisor_start=layout.BASE,
    hypervisor_level=2,
    hypervisor_slots=range(layout.FIRST_SLOT, paging.entry_count(PagingMode.TWO_LEVEL, 2)),
    hypervisor_via=None,
    hypervisor_entries=lambda glue: layout.hypervisor_slots(glue).entries,
    linear_mapping=True, downgrade=True, superpages=True)

PAE = PagingRules(
    mode=PagingMode.PAE, name="PAE",
    hypervisor_start=layout.PAE_BASE,
    hypervisor_level=2,
    hypervisor_slots=range(layout.PAE_FIRST_SLOT, paging.entry_count(PagingMode.PAE, 2)),
    hypervisor_via=PAE_XEN_L3_SLOT,
    hypervisor_entries=lambda glue: layout.pae_hypervisor_slots().entries,
    linear_mapping=False, downgrade=False,
    top_allowed_flags=PAE_L3_ALLOWED_FLAGS)

RULES = {rules.mode: rules for rules in (TWO_LEVEL, PAE)}
