"""Table 2 of the Xen paper (Barham et al., SOSP 2003): the lines modified or added to
port Linux and Windows XP to Xen, by OS subsection. The only place these numbers live;
shared/XEN-ABI.md quotes the totals.

The XP column's split (1299 architecture-independent, 3321 Xen-specific, no drivers in
the count) is the paper's; the two add up to its total, 4620.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    name: str  # as pvtool names it (the paper's "Xen-specific" is hypervisor-specific)
    paper: str  # as Table 2 names it
    aliases: tuple[str, ...]  # short names accepted by --category
    linux: int
    xp: int | None  # None: the paper's "-", no such code in the XP port


ARCH_INDEPENDENT = "architecture-independent"
NET_DRIVER = "virtual network driver"
BLOCK_DRIVER = "virtual block-device driver"
HYPERVISOR_SPECIFIC = "hypervisor-specific non-driver"

CATEGORIES = (
    Category(ARCH_INDEPENDENT, "Architecture-independent", ("arch-independent", "arch"),
             78, 1299),
    Category(NET_DRIVER, "Virtual network driver", ("net", "network"), 484, None),
    Category(BLOCK_DRIVER, "Virtual block-device driver", ("block", "blk"), 1070, None),
    Category(HYPERVISOR_SPECIFIC, "Xen-specific (non-driver)",
             ("hypervisor", "hypervisor-specific", "xen-specific", "xen"), 1363, 3321),
)

# The ports' totals and their share of the x86 code base, as the paper prints them.
LINUX_TOTAL, LINUX_SHARE_PERCENT = 2995, 1.36
XP_TOTAL, XP_SHARE_PERCENT = 4620, 0.04

assert sum(c.linux for c in CATEGORIES) == LINUX_TOTAL
assert sum(c.xp or 0 for c in CATEGORIES) == XP_TOTAL


def canonical(name: str) -> str:
    """A Table 2 category's name for NAME or one of its aliases (any case); any other
    name is a category of the user's own and is kept as given."""
    key = name.strip().lower()
    for category in CATEGORIES:
        if key in (category.name, category.paper.lower(), *category.aliases):
            return category.name
    return name.strip()
