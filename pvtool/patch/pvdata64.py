"""The .pvdata section of a patched 64-bit kernel (patches/xen64): what pvdata.py is for
32-bit, in 64-bit layouts, plus what a 64-bit glue keeps for itself.

- The virtual-CPU registers (abi/pvtool.py VCPU_REGS_64), the Multiboot information
  the PV entry builds and the command line it copies from start_info, hypercall
  argument blocks, the records of the kernel L4s loaded (each with the pair of
  mmuext_ops, NEW_BASEPTR and NEW_USER_BASEPTR, that loads it in one call, as Linux's
  xen_write_cr3 batches them), the trap table buffer of 16-byte trap_info entries, the
  reasons the glue prints when it gives up, its stack.
- Page-aligned after those: the page the PV entry maps onto shared_info (the glue's
  vcpu_info, reached with a disp32 from the kernel's code: Xen's own range is out of
  that reach), the GDT shadow, the user L4 tables (one per kernel L4 the kernel loads,
  holding its lower half: XEN-ABI64.md 1.1, 1.8), the tables of the user-mode view of
  its upper half (only the pages the kernel mapped for user mode) and the tables of the
  identity map of low RAM the kernel's 64-bit entry expects.

Every address the glue and the rewrites use is one of `symbols()`.
"""

import struct
from dataclasses import dataclass

from pvtool.abi import pvtool as pvabi
from pvtool.abi import xen, xen64
from pvtool.abi.layouts import PHYSDEV_SET_IOPL, SCHED_SHUTDOWN
from pvtool.abi.xen import FIRST_RESERVED_GDT_ENTRY, MAX_GUEST_CMDLINE, ShutdownReason
from pvtool.image import multiboot
from pvtool.patch.pvdata import GLUE_FAILURES as GLUE_FAILURES_32
from pvtool.patch.pvdata import failure_offsets, failure_record, multiboot_info, put
from pvtool.x86.descriptors import DESCRIPTOR_SIZE
from pvtool.x86.paging import PAGE_SIZE
from pvtool.x86.registers import CR0_PG, CR4_PAE

# What the kernel's 64-bit entry finds in CR0 and CR4: paging on (long mode), PAE.
CR0_AT_ENTRY_64 = multiboot.CR0_AT_ENTRY | CR0_PG

# Offsets in the file-backed pages.
REGS = 0x000  # VCPU_REGS_64, 168 bytes
MBI = 0x0A8  # INFO_SIZE: to 0x11C
MMUEXT = 0x120  # one mmuext_op_64
MMU_UPDATE = MMUEXT + xen64.MMUEXT_OP_64.size  # 0x138: one mmu_update
CALLBACK = MMU_UPDATE + 16  # 0x148: one callback_register_64
IOPL_ARG = CALLBACK + xen64.CALLBACK_REGISTER_64.size  # 0x158
POLL_ARG = IOPL_ARG + 16  # 0x168: sched_poll_64, no ports: wait forever
SHUTDOWN_ARG = POLL_ARG + xen64.SCHED_POLL_64.size  # 0x180
START_INFO_PTR = SHUTDOWN_ARG + 8  # 0x188
MFN_LIST_PTR = START_INFO_PTR + 8  # 0x190: start_info.mfn_list, the P2M, pfn -> mfn
# pv_write_cr3's user L4 records (USER_L4_RECORDS, below) in use, and the two it
# compares a CR3 value with first (their addresses: the last two kernel L4s loaded,
# the pair a context switch alternates between).
USER_L4_COUNT = MFN_LIST_PTR + 8  # 0x198
USER_L4_RECENT = USER_L4_COUNT + 8  # 0x1a0: two u64 record addresses
# The glue's 2 MiB as pv_glue_range last linked it, which pv_write_cr3 checks a new
# L4 against with loads only: the link-range entry of the L4 (accessed bit set), the
# address of the L3's entry below it and that entry, the address of the L2's entry for
# the glue's range and that entry; then how many times it has linked (a new count
# tells a CR3 write that its compares may have read two links' entries).
GLUE_LINK = USER_L4_RECENT + 16  # 0x1b0: six u64
# The record of the kernel L4 in CR3 while its user L4 has not been brought in step
# with it since (its address: pv_write_cr3 sets it), 0 once it has (pv_user_l4_sync,
# on the way to user mode).
USER_L4_STALE = GLUE_LINK + 6 * 8  # 0x1e0
GDT_FRAMES = 0x240  # u64 frames for set_gdt
SYSRET_RSP = 0x2B0  # the user's RSP while pv_sysret builds its frame
SYSRET_STACK_TOP = 0x320  # pv_sysret's frame and the hypercall page's pushes: 72 bytes
# A record per kernel L4 pv_write_cr3 has met, in the order met (record n: user L4 n
# of the pool): the kernel L4's physical address (unused: all ones, which no L4's
# address is), its virtual address (VIRT_BASE + physical), then the mmuext_op pair
# that loads it, NEW_BASEPTR with its frame and NEW_USER_BASEPTR with its user L4's,
# made when the L4 is first met: a switch to a known L4 writes no argument. They and
# everything else a switch reads or writes in .pvdata share this first page, so a
# switch brings one page of .pvdata back into the TLB its previous switch flushed.
USER_L4_TABLES = 16
USER_L4_RECORDS = 0x340
USER_L4_VIRTUAL, USER_L4_OPS = 8, 16  # the key, the kernel L4's physical address, at 0
USER_L4_RECORD_SIZE = 64
USER_L4_UNUSED = (1 << 64) - 1
PV_STACK_TOP = PAGE_SIZE  # the PV entry's stack, the rest of the first page
PV_STACK = 0xC00
TRAP_INFO_BUF = PAGE_SIZE  # 256 gates and the terminating entry: just over a page
TRAP_INFO_ENTRIES = 257
CMDLINE = TRAP_INFO_BUF + TRAP_INFO_ENTRIES * xen64.TRAP_INFO_64.size + 0xF0  # 0x2100
# The user-mode view of the kernel's upper half (pv_user_view): how many tables of
# the pool are in use, then the kernel table (pseudo-physical) each one views; and
# the views made of the kernel L4's upper entries (pv_user_view_top): how many, each
# kernel L4 entry, and the user L4 entry made of it.
USER_VIEW_COUNT = CMDLINE + MAX_GUEST_CMDLINE  # 0x2500
USER_VIEW_TABLES = 32
USER_VIEW_KERNEL = USER_VIEW_COUNT + 8
USER_VIEW_TOP_COUNT = USER_VIEW_KERNEL + USER_VIEW_TABLES * 8  # 0x2608
USER_VIEW_TOP_KERNEL = USER_VIEW_TOP_COUNT + 8
USER_VIEW_TOP_USER = USER_VIEW_TOP_KERNEL + USER_VIEW_TABLES * 8  # to 0x2810
FAILURES = USER_VIEW_TOP_USER + USER_VIEW_TABLES * 8  # 0x2810: the reasons, to the end
FILE_SIZE = 3 * PAGE_SIZE
# Page-aligned, zero-filled memory after the file-backed pages.
SHARED_INFO_PAGE = FILE_SIZE
# The kernel's handler of each vector, for pv_trap_common: one u64 every 40 bytes
# (the stride its `call`s give it: 5 bytes of code per vector, scaled by 8).
TRAP_HANDLERS = SHARED_INFO_PAGE + PAGE_SIZE
TRAP_HANDLER_STRIDE = 40
GDT_SHADOW = TRAP_HANDLERS + 3 * PAGE_SIZE
GDT_SHADOW_ENTRIES = FIRST_RESERVED_GDT_ENTRY  # Xen's own entries lie above (pvdata.py)
GDT_SHADOW_FRAMES = GDT_SHADOW_ENTRIES * DESCRIPTOR_SIZE // PAGE_SIZE
USER_L4_POOL = GDT_SHADOW + GDT_SHADOW_FRAMES * PAGE_SIZE
USER_VIEW_POOL = USER_L4_POOL + USER_L4_TABLES * PAGE_SIZE
# The identity map of low RAM: one L3, one L2, and L1s for IDENTITY_PAGES (128 MiB,
# a minikern's RAM many times over; one 4-level L1 maps 2 MiB).
IDENTITY_L3 = USER_VIEW_POOL + USER_VIEW_TABLES * PAGE_SIZE
IDENTITY_L2 = IDENTITY_L3 + PAGE_SIZE
IDENTITY_L1S = IDENTITY_L2 + PAGE_SIZE
IDENTITY_L1_TABLES = 64
ENTRIES = 512
IDENTITY_PAGES = IDENTITY_L1_TABLES * ENTRIES
IDENTITY_END = IDENTITY_L1S + IDENTITY_L1_TABLES * PAGE_SIZE  # the last page table
# The kernel L4's upper entries each user L4's upper half was last made from: ordinary
# writable pages, past the tables.
USER_L4_SHADOWS = IDENTITY_END
MEMSZ = USER_L4_SHADOWS + USER_L4_TABLES * PAGE_SIZE

GLUE_FAILURES = {
    **{name: GLUE_FAILURES_32[name] for name in ("paging_off", "set_gdt", "ldt")},
    "iopl": "PHYSDEVOP_set_iopl refused I/O privilege for the kernel",
    "map": "update_va_mapping refused a mapping the PV entry needs, or low RAM is too "
           "large for its identity map",
    "glue_range": "mov to CR3: the new L4 does not map the link range down to an L2, "
                  "or maps something else where the glue lies",
    "mmuext": "mmuext_op refused a new L4 (kernel or user), a pin or an invlpg",
    "mmu_update": "mmu_update refused an entry: of the PV entry's identity map, of a "
                  "user L4 or of its view of the kernel's upper half",
    "user_l4": f"mov to CR3: more than {USER_L4_TABLES} distinct L4 tables, each needing "
               "a user L4 of the glue's",
    "user_view": f"mov to CR3: the user-mode view of the kernel's upper half needs more "
                 f"than {USER_VIEW_TABLES} tables or upper L4 entries, or a kernel table "
                 "lies past the RAM the glue maps",
    "gdt_reserved": f"lgdt: a present descriptor at entry {FIRST_RESERVED_GDT_ENTRY} or "
                    "above, where Xen keeps its own GDT entries",
    "set_trap_table": "lidt: HYPERVISOR_set_trap_table refused the IDT's gates",
    "stack_switch": "ltr: HYPERVISOR_stack_switch refused the TSS's RSP0",
    "callback": "wrmsr: callback_op refused the syscall or sysenter entry",
    "segment_base": "wrmsr or wr{fs,gs}base: set_segment_base refused a base",
    "msr": "wrmsr of an MSR the xen64 port neither passes on nor records",
}


@dataclass(frozen=True)
class PvData64:
    base: int  # page-aligned virtual address of .pvdata, after the kernel
    phys_base: int  # its physical address

    @property
    def memsz(self) -> int:
        return MEMSZ

    def symbols(self) -> dict[str, int]:
        b = self.base
        regs = pvabi.VCPU_REGS_64
        info = multiboot.INFO_FIELDS
        op = xen64.MMUEXT_OP_64
        return {
            **{f"regs_{name}": b + REGS + regs.offset(name) for name in regs.fields},
            "mbi": b + MBI,
            **{f"mbi_{name}": b + MBI + info[name]
               for name in ("mem_upper", "cmdline", "mods_count", "mods_addr")},
            "mmuext": b + MMUEXT,
            "mmuext_cmd": b + MMUEXT + op.offset("cmd"),
            "mmuext_arg1": b + MMUEXT + op.offset("arg1"),
            "mmuext_arg2": b + MMUEXT + op.offset("arg2"),
            "mmu_update": b + MMU_UPDATE,
            "callback": b + CALLBACK,
            "callback_type": b + CALLBACK + xen64.CALLBACK_REGISTER_64.offset("type"),
            "callback_address": b + CALLBACK + xen64.CALLBACK_REGISTER_64.offset("address"),
            "iopl_arg": b + IOPL_ARG,
            "poll_arg": b + POLL_ARG,
            "shutdown_crash_arg": b + SHUTDOWN_ARG,
            "start_info_ptr": b + START_INFO_PTR,
            "mfn_list_ptr": b + MFN_LIST_PTR,
            "user_l4_count": b + USER_L4_COUNT,
            "user_l4_recent": b + USER_L4_RECENT,
            "user_l4_tables": USER_L4_TABLES,
            "user_l4_records": b + USER_L4_RECORDS,
            "user_l4_record_size": USER_L4_RECORD_SIZE,
            "user_l4_record_shift": USER_L4_RECORD_SIZE.bit_length() - 1,
            "user_l4_virtual": USER_L4_VIRTUAL,
            "user_l4_ops": USER_L4_OPS,
            "user_l4_kernel_frame": USER_L4_OPS + op.offset("arg1"),
            "user_l4_user_frame": USER_L4_OPS + op.size + op.offset("arg1"),
            **{f"glue_{name}": b + GLUE_LINK + 8 * n
               for n, name in enumerate(("l4e", "l3e_ptr", "l3e", "l2e_ptr", "l2e",
                                         "generation"))},
            "user_l4_pool": b + USER_L4_POOL,
            "user_l4_pool_phys": self.phys_base + USER_L4_POOL,
            "user_l4_stale": b + USER_L4_STALE,
            "user_view_count": b + USER_VIEW_COUNT,
            "user_view_kernel": b + USER_VIEW_KERNEL,
            "user_view_tables": USER_VIEW_TABLES,
            "user_view_top_count": b + USER_VIEW_TOP_COUNT,
            "user_view_top_user": b + USER_VIEW_TOP_USER,
            "user_view_pool": b + USER_VIEW_POOL,
            "user_view_pool_phys": self.phys_base + USER_VIEW_POOL,
            "gdt_frames": b + GDT_FRAMES,
            "gdt_shadow": b + GDT_SHADOW,
            "gdt_shadow_entries": GDT_SHADOW_ENTRIES,
            "gdt_shadow_frames": GDT_SHADOW_FRAMES,
            "trap_info": b + TRAP_INFO_BUF,
            "cmdline": b + CMDLINE,
            "cmdline_phys": self.phys_base + CMDLINE,
            "cmdline_size": MAX_GUEST_CMDLINE,
            "shared_info_page": b + SHARED_INFO_PAGE,
            "trap_handlers": b + TRAP_HANDLERS,
            "pv_stack_top": b + PV_STACK_TOP,
            "sysret_rsp": b + SYSRET_RSP,
            "sysret_stack_top": b + SYSRET_STACK_TOP,
            "mbi_phys": self.phys_base + MBI,
            "identity_l3": b + IDENTITY_L3, "identity_l3_phys": self.phys_base + IDENTITY_L3,
            "identity_l2": b + IDENTITY_L2, "identity_l2_phys": self.phys_base + IDENTITY_L2,
            "identity_l1s": b + IDENTITY_L1S,
            "identity_l1s_phys": self.phys_base + IDENTITY_L1S,
            "identity_l1_tables": IDENTITY_L1_TABLES,
            "identity_max_pages": IDENTITY_PAGES,
            "pvdata_tables_phys": self.phys_base + USER_L4_POOL,
            "pvdata_tables_end_phys": self.phys_base + IDENTITY_END,
            "user_l4_shadows": b + USER_L4_SHADOWS,
            **{f"failure_{name}": b + offset for name, offset in _failure_offsets().items()},
        }

    def contents(self) -> bytes:
        """The file-backed bytes; the pages after them are zero-filled memory."""
        data = bytearray(FILE_SIZE)
        # CS and SS read as Xen's flat kernel selectors with RPL 0 until the kernel
        # loads selectors of its own
        put(data, REGS, pvabi.VCPU_REGS_64.pack(cr0=CR0_AT_ENTRY_64, cr4=CR4_PAE,
                                                cs=xen64.FLAT_KERNEL_CS64 & ~3,
                                                ss=xen64.FLAT_KERNEL_SS64 & ~3))
        # memory and the command line; no modules (Xen's start_info names at most one,
        # the initrd, which a Multiboot kernel does not expect)
        put(data, MBI, multiboot_info(multiboot.INFO_MEMORY | multiboot.INFO_CMDLINE))
        put(data, IOPL_ARG, PHYSDEV_SET_IOPL.pack(iopl=1))
        put(data, POLL_ARG, xen64.SCHED_POLL_64.pack())
        put(data, SHUTDOWN_ARG, SCHED_SHUTDOWN.pack(reason=ShutdownReason.crash))
        for name, offset in _failure_offsets().items():
            put(data, offset, failure_record(GLUE_FAILURES[name]))
        # the two records compared first: unused ones, which match no CR3 value
        first_two = (self.base + USER_L4_RECORDS + n * USER_L4_RECORD_SIZE for n in range(2))
        put(data, USER_L4_RECENT, struct.pack("<2Q", *first_two))
        for n in range(USER_L4_TABLES):
            put(data, USER_L4_RECORDS + n * USER_L4_RECORD_SIZE, _unused_record())
        return bytes(data)


def _unused_record() -> bytes:
    """A user L4 record before its kernel L4 is met: a key no L4 has, and the two
    commands of its mmuext_op pair (their frames are filled in when it is)."""
    op = xen64.MMUEXT_OP_64
    commands = (xen.MmuextCmd.new_baseptr, xen.MmuextCmd.new_user_baseptr)
    return struct.pack("<QQ", USER_L4_UNUSED, 0) + b"".join(op.pack(cmd=c) for c in commands)


def _failure_offsets() -> dict[str, int]:
    return failure_offsets(GLUE_FAILURES, FAILURES, FILE_SIZE, 8)
