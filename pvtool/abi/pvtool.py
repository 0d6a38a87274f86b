"""pvtool's own extensions to the Xen PV ABI (docs/ABI.md lists and explains them).

An automatically patched kernel keeps building its own page tables, so it cannot map
shared_info where Xen guests do (with update_va_mapping into their own tables: the
mapping would vanish when the kernel loads its own). pvtool's hypervisor therefore
also maps the domain's shared_info page, writable, at a fixed address inside the
hypervisor's range of every page directory it validates; the patcher's cli/sti/pushf/
popf stubs address vcpu_info there. Nothing else of the hypervisor range is writable.
"""

from enum import IntEnum

from pvtool.abi.layouts import SHARED_INFO, START_INFO, VCPU_INFO, layout
from pvtool.abi.xen import HYPERVISOR_VIRT_START_2LEVEL

# Offset of the hypervisor's private area inside its 2-level range (the range starts
# with the read-only machine-to-phys table, one 4 MiB slot of it on 2-level paging).
# The private area has one virtual address in both layouts: 0xFC400000 is inside
# Xen's range on 2-level (0xFC000000 up) and on PAE (0xF5800000 up) alike, so the
# fixed shared_info mapping and the glue window do not move with the paging mode.
PRIVATE_AREA_OFFSET = 0x400000
SHARED_INFO_OFFSET = PRIVATE_AREA_OFFSET + 0x10000
PRIVATE_AREA_VA = HYPERVISOR_VIRT_START_2LEVEL + PRIVATE_AREA_OFFSET

# The glue window: a patched kernel's added code and data (.pvtext, .pvdata) are
# linked here, in the hypervisor's range, and loaded into the domain's own frames in
# the PC's low-memory hole, which no Multiboot kernel is given as RAM. The hypervisor
# maps the window (text read-only, data writable) into every address space it
# validates, so the glue works whatever page tables the kernel builds. Only 2-level
# domains get it (patched PAE kernels are not supported).
GLUE_WINDOW_OFFSET = 0x800000
GLUE_WINDOW_SIZE = 4 << 20
GLUE_PHYS_BASE = 0xA0000
GLUE_PHYS_LIMIT = 0x100000


# While the kernel believes paging is off, a patched kernel's PV entry gives it an
# identity map of its RAM in tables of its own at the top of the low-memory hole:
# one L2 and this many L1s (256 MiB).
IDENTITY_L1_TABLES = 64


def glue_window(pae: bool) -> int:
    """Where the glue window is linked; the same address on PAE (see above)."""
    return HYPERVISOR_VIRT_START_2LEVEL + GLUE_WINDOW_OFFSET


def shared_info_va(pae: bool) -> int:
    """The fixed virtual address of shared_info in every validated address space,
    2-level or PAE (the private area does not move, see above)."""
    return HYPERVISOR_VIRT_START_2LEVEL + SHARED_INFO_OFFSET


def vcpu0_field_va(pae: bool, field: str) -> int:
    """The fixed virtual address of one field of vcpu_info[0]."""
    return shared_info_va(pae) + SHARED_INFO.offset("vcpu_info") + VCPU_INFO.offset(field)


# The glue's last words: before it crashes the domain, a patched kernel's glue writes
# one line starting with this on the emergency console (console_io), and the crash
# that follows carries that line as its reason (hv/hypercalls/sched.py).
GLUE_FAILURE_PREFIX = "glue: "

# What a Multiboot loader tells a kernel beyond Xen's start_info: the command line as
# native mode's loader gives it ("path text") and the module list (every module's
# physical start and end and its string, Multiboot 3.3), all as physical addresses,
# which the builder writes into the unused tail of the start_info page, and from which
# a patched kernel's PV entry completes its Multiboot information.
START_INFO_MULTIBOOT = START_INFO.size
MULTIBOOT_TABLE = layout("pvtool_multiboot", 12, cmdline=(0, "I"), mods_count=(4, "I"),
                         mods_addr=(8, "I"))


# ELF notes named "pvtool" in a patched image.
PVTOOL_NOTE_NAME = b"pvtool"


class PvtoolNote(IntEnum):
    # u32 address, u32 count: the trap-site table (TRAP_SITE entries). The hypervisor
    # emulates the original instruction when the guest hits one of its int3s.
    trap_sites = 1
    # u32 address of the virtual-CPU register block the patched kernel keeps
    # (VCPU_REGS), so trap-site emulation and the stubs share one state.
    vcpu_regs = 2
    # SITE_RANGE entries: the code that stands for each replaced site (in place, or its
    # part of a detour's stub), so the hypervisor can name the original instruction
    # whose replacement called the glue when the glue gives up.
    site_ranges = 3


# One entry of the trap-site table: where the int3 is, how long the original
# instruction was, and its bytes.
TRAP_SITE = layout("trap_site", 24, address=(0, "I"), length=(4, "B"), original=(8, "15s"))

# Code in [start, end) of the patched image replaces the original instruction at site.
SITE_RANGE = layout("site_range", 12, start=(0, "I"), end=(4, "I"), site=(8, "I"))

# The instruction classes (x86/catalogue.py names) a trap site may stand for: those
# pvtool's hypervisor emulates for a PV kernel. The patcher never leaves a trap site of
# any other class (a rules file that asks for one does not load, and a site that would
# become one refuses the image), and hv/emulate.py checks when it is imported that its
# table of handlers covers exactly these.
TRAP_SITE_CLASSES = frozenset({
    "cli", "sti", "hlt", "wbinvd", "invd", "clts", "invlpg",
    "mov_from_cr0", "mov_to_cr0", "mov_from_cr2", "mov_to_cr2", "mov_from_cr3",
    "mov_to_cr3", "mov_from_cr4", "mov_to_cr4", "mov_from_dr", "mov_to_dr",
    "rdmsr", "wrmsr", "mov_to_ss", "pop_ss", "sysexit", "sysret",
    "pushf", "iret", "sldt", "str",
})

# The virtual-CPU registers a patched kernel keeps for itself: what it last wrote to
# CR0/CR3/CR4 and loaded with lgdt/lidt/lldt/ltr, read back by mov from CRn, sgdt...,
# and the linear address of the TSS it loaded, whose SS0:ESP0 the hypervisor reads
# for every trap from ring 3 (kernels change ESP0 on each context switch).
VCPU_REGS = layout("vcpu_regs", 40, cr0=(0, "I"), cr3=(4, "I"), cr4=(8, "I"),
                   gdtr=(16, "6s"), idtr=(24, "6s"), ldtr=(32, "H"), tr=(34, "H"),
                   tss_base=(36, "I"))


# ---- 64-bit kernels (patches/xen64)
# A patched 64-bit kernel's .pvdata and .pvtext are linked right after its own image,
# not in a window of the hypervisor's range: a detour is a rel32 jmp and reaches only
# +-2 GiB, and Xen's range (0xFFFF800000000000 up) is far from a kernel linked in the
# top 2 GiB. Loaded at VIRT_BASE + physical like the kernel, they are mapped by the
# builder's tables with it, and by the kernel's own tables wherever they map its link
# range. The glue maps shared_info itself (update_va_mapping of a page of .pvdata),
# so a 64-bit domain needs no pvtool extension to reach vcpu_info.
# The notes carry 64-bit addresses: trap_sites is u64 address, u64 count; vcpu_regs a
# u64 address; site_ranges SITE_RANGE_64 entries.
# The classes a 64-bit trap site may stand for: those hv/trapsites64.py emulates (it
# checks so when imported): the ones branch targets cut in kernels' idle loops,
# interrupt returns and far returns, and the debug-register moves patches/xen64 leaves
# to the hypervisor. The patcher refuses a 64-bit trap site of any other class.
TRAP_SITE_CLASSES_64 = frozenset({"cli", "sti", "hlt", "iret", "retfq", "mov_to_dr",
                                  "mov_from_dr"})
# By the kernel's width: what the patcher checks a trap site against.
TRAP_SITE_CLASSES_BY_MODE = {32: TRAP_SITE_CLASSES, 64: TRAP_SITE_CLASSES_64}
TRAP_SITE_64 = layout("trap_site_64", 32, address=(0, "Q"), length=(8, "B"),
                      original=(16, "15s"))
SITE_RANGE_64 = layout("site_range_64", 24, start=(0, "Q"), end=(8, "Q"), site=(16, "Q"))
# What a patched 64-bit kernel last wrote to its control registers and loaded into its
# descriptor-table registers (10-byte pseudo-descriptors), the TSS it loaded, and the
# MSRs the glue records rather than passes on (STAR, SFMASK, SYSENTER_CS/ESP) or turns
# into hypercalls (the segment bases, read back by rdmsr and rd{fs,gs}base; the
# system-call entries, which the glue's callbacks jump to), and the code and stack
# selectors the kernel last loaded itself (it runs on Xen's flat ones: a read of CS or
# SS gives back its own). Last, the glue's entry for iretq, which the PV entry records:
# a trap site standing for an iretq that returns to user mode continues there, since
# the glue brings the user L4 in step on that way (hv/trapsites64.py).
VCPU_REGS_64 = layout("vcpu_regs_64", 168, cr0=(0, "Q"), cr3=(8, "Q"), cr4=(16, "Q"),
                      cr8=(24, "Q"), gdtr=(32, "10s"), idtr=(48, "10s"), ldtr=(64, "H"),
                      tr=(66, "H"), cs=(68, "H"), ss=(70, "H"), tss_base=(72, "Q"),
                      fs_base=(80, "Q"), gs_base=(88, "Q"), kernel_gs_base=(96, "Q"),
                      star=(104, "Q"), sfmask=(112, "Q"), lstar=(120, "Q"), cstar=(128, "Q"),
                      sysenter_cs=(136, "Q"), sysenter_esp=(144, "Q"),
                      sysenter_eip=(152, "Q"), iret_entry=(160, "Q"))
