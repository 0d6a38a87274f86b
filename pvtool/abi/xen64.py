"""Xen's 64-bit PV ABI as data: the structure layouts, selectors, address ranges and
numbers that only an x86-64 guest sees. abi/xen.py holds what both widths share and
abi/layouts.py the 32-bit layouts (and the structures whose layout is the same on
both); nothing 64-bit is written there.

Sources: XEN-ABI64.md (sections named below) and Xen's public headers
(xen/include/public/xen.h, arch-x86/xen.h, arch-x86/xen-x86_64.h, callback.h,
memory.h), with LP64 alignment: `unsigned long`, `xen_pfn_t`, `xen_ulong_t` and a
guest handle are 8 bytes.
"""

from enum import IntEnum

from pvtool.abi.layouts import layout
from pvtool.abi.xen import MAX_GUEST_CMDLINE, Hypercall, hypercall_page

START_INFO_MAGIC_64 = b"xen-3.0-x86_64"

# -- Structures ----------------------------------------------------------------------

# struct start_info (public/xen.h): magic[32], nr_pages, shared_info (a machine
# address), flags (u32), store_mfn, store_evtchn (u32), console.domU {mfn, evtchn
# (u32)}, pt_base, nr_pt_frames, mfn_list, mod_start, mod_len, cmd_line[1024],
# first_p2m_pfn, nr_p2m_frames: 1168 bytes.
START_INFO_64 = layout(
    "start_info", 1168,
    magic=(0, "32s"), nr_pages=(32, "Q"), shared_info=(40, "Q"), flags=(48, "I"),
    store_mfn=(56, "Q"), store_evtchn=(64, "I"), console_mfn=(72, "Q"),
    console_evtchn=(80, "I"), pt_base=(88, "Q"), nr_pt_frames=(96, "Q"),
    mfn_list=(104, "Q"), mod_start=(112, "Q"), mod_len=(120, "Q"),
    cmd_line=(128, f"{MAX_GUEST_CMDLINE}s"), first_p2m_pfn=(1152, "Q"),
    nr_p2m_frames=(1160, "Q"),
)  # fmt: skip

# struct vcpu_info with arch_vcpu_info {cr2, pad} of xen-x86_64.h: evtchn_pending_sel
# is an unsigned long, so cr2 sits at 16 (XEN-ABI64.md 1.5, #PF); vcpu_time_info at 32.
VCPU_INFO_64 = layout(
    "vcpu_info", 64,
    evtchn_upcall_pending=(0, "B"), evtchn_upcall_mask=(1, "B"),
    evtchn_pending_sel=(8, "Q"), cr2=(16, "Q"), time=(32, "32s"),
)  # fmt: skip

# struct shared_info: the event bitmaps are 64 unsigned longs each, so the mask and
# the wall clock move.
SHARED_INFO_64 = layout(
    "shared_info", 3084,
    vcpu_info=(0, "64s"), evtchn_pending=(2048, "512s"), evtchn_mask=(2560, "512s"),
    wc_version=(3072, "I"), wc_sec=(3076, "I"), wc_nsec=(3080, "I"),
)  # fmt: skip

# trap_info (arch-x86/xen.h), 16 bytes: vector, flags (DPL in bits 0-1, bit 2 masks
# events), cs, padding, address (1.5).
TRAP_INFO_64 = layout("trap_info", 16, vector=(0, "B"), flags=(1, "B"), cs=(2, "H"),
                      address=(8, "Q"))

# callback_register (callback.h), 16 bytes: type, flags, padding, address (1.5).
CALLBACK_REGISTER_64 = layout("callback_register", 16, type=(0, "H"), flags=(2, "H"),
                              address=(8, "Q"))

# HYPERVISOR_iret's struct iret_context (1.3): RAX, R11, RCX from the hypercall page,
# the flags the guest pushed (VGCF_in_syscall), then an iretq frame.
IRET_CONTEXT_64 = layout("iret_context", 72, rax=(0, "Q"), r11=(8, "Q"), rcx=(16, "Q"),
                         flags=(24, "Q"), rip=(32, "Q"), cs=(40, "Q"), rflags=(48, "Q"),
                         rsp=(56, "Q"), ss=(64, "Q"))

# mmuext_op (public/xen.h): cmd (u32), arg1 (an mfn or a linear address), arg2.
MMUEXT_OP_64 = layout("mmuext_op", 24, cmd=(0, "I"), arg1=(8, "Q"), arg2=(16, "Q"))

# sched_poll: ports (a guest handle), nr_ports (u32), timeout (u64, ns).
SCHED_POLL_64 = layout("sched_poll", 24, ports=(0, "Q"), nr_ports=(8, "I"),
                       timeout=(16, "Q"))

# memory_op (memory.h): xen_add_to_physmap and xen_memory_map with 8-byte
# xen_ulong_t and handles; xen_machphys_mapping {v_start, v_end, max_mfn}, which only
# a 64-bit guest is answered.
XEN_ADD_TO_PHYSMAP_64 = layout("xen_add_to_physmap", 24, domid=(0, "H"), count=(2, "H"),
                               space=(4, "I"), idx=(8, "Q"), gpfn=(16, "Q"))
XEN_MEMORY_MAP_64 = layout("xen_memory_map", 16, nr_entries=(0, "I"), buffer=(8, "Q"))
XEN_MACHPHYS_MAPPING_64 = layout("xen_machphys_mapping", 24, v_start=(0, "Q"),
                                 v_end=(8, "Q"), max_mfn=(16, "Q"))

# -- Entry and exit (1.2-1.7) --------------------------------------------------------


class SegmentBase(IntEnum):
    """HYPERVISOR_set_segment_base's `which` (xen-x86_64.h; 1.7)."""

    fs = 0
    gs_user = 1
    gs_kernel = 2
    gs_user_sel = 3


# HYPERVISOR_iret's flags word: return with SYSRET, discarding RCX, R11, CS, SS (1.3).
VGCF_IN_SYSCALL = 0x100
# Exceptions whose bounce frame carries an error code (X86_EXC_HAVE_EC, 1.5).
EXCEPTIONS_WITH_ERROR_CODE_64 = frozenset({8, 10, 11, 12, 13, 14, 17, 21, 29, 30})

# The flat selectors of Xen's reserved GDT page (xen-x86_64.h): kernel and user both
# run in ring 3 on the same selectors, so the kernel's CS and SS carry RPL 3; 0xe023
# is the 32-bit (compat) user code segment.
FLAT_RING3_CS32 = 0xE023
FLAT_RING3_CS64 = 0xE033
FLAT_RING3_SS64 = 0xE02B
FLAT_KERNEL_CS64 = FLAT_RING3_CS64
FLAT_KERNEL_SS64 = FLAT_RING3_SS64
GUEST_KERNEL_RPL_64 = 3

# -- The address space (1.1, 1.8) ----------------------------------------------------

# Xen's own part of every address space (asm/config.h): L4 slots 256-271, the
# read-only M2P first (MACH2PHYS_VIRT_START/END, xen-x86_64.h); a guest may use slots
# 0-255 and 272-511 (is_guest_l4_slot).
HYPERVISOR_VIRT_START_64 = 0xFFFF_8000_0000_0000
HYPERVISOR_VIRT_END_64 = 0xFFFF_8800_0000_0000
_L4_SLOT_SHIFT = 39
XEN_L4_SLOTS = range((HYPERVISOR_VIRT_START_64 >> _L4_SLOT_SHIFT) & 511,
                     (HYPERVISOR_VIRT_END_64 >> _L4_SLOT_SHIFT) & 511)  # 256-271
RO_MPT_VIRT_START_64 = HYPERVISOR_VIRT_START_64
RO_MPT_VIRT_END_64 = 0xFFFF_8040_0000_0000
RO_MPT_L4_SLOT = XEN_L4_SLOTS[0]
PERDOMAIN_L4_SLOT = 260  # Xen's per-domain area: its GDT and LDT mappings
# The L4 slots a guest's user table may hold: the lower half (1.1; Linux's user PGD).
USER_L4_SLOTS = 256
# Xen's software PTE bit: flag bit 12, which put_pte_flags stores in PTE bit 52
# (asm/x86_64/page.h): a 64-bit kernel's own page, mapped user so its CPL 3 reaches it.
PAGE_GUEST_KERNEL = 1 << 52


# -- The hypercall page (1.2) --------------------------------------------------------


def _hypercall_entry(number: int) -> bytes:
    """Entry i is `push rcx; push r11; mov eax, i; syscall; pop r11; pop rcx; ret`,
    and the iret entry `push rcx; push r11; push rax; mov eax, 23; syscall` (it never
    returns)."""
    mov_eax = b"\xb8" + number.to_bytes(4, "little")
    if number == Hypercall.iret:
        return bytes.fromhex("51 4153 50") + mov_eax + bytes.fromhex("0f05")
    return bytes.fromhex("51 4153") + mov_eax + bytes.fromhex("0f05 415b 59 c3")


def hypercall_page_64() -> bytes:
    """The hypercall page as Xen writes it for a 64-bit guest."""
    return hypercall_page(_hypercall_entry)


# -- vcpu_op (public/vcpu.h, arch-x86/xen.h, xen-x86_64.h) ---------------------------

# vcpu_runstate_info: state (int), then u64s aligned to 8: 48 bytes (44 on x86-32).
VCPU_RUNSTATE_INFO_64 = layout("vcpu_runstate_info", 48, state=(0, "i"),
                               state_entry_time=(8, "Q"), time=(16, "4Q"))
# vcpu_set_singleshot_timer: timeout_abs_ns, flags, padded to 16 bytes.
VCPU_SET_SINGLESHOT_TIMER_64 = layout("vcpu_set_singleshot_timer", 16,
                                      timeout_abs_ns=(0, "Q"), flags=(8, "I"))
VCPU_INFO_ALIGN_64 = 8  # alignof(struct vcpu_info): evtchn_pending_sel is a u64

# The general-purpose registers of struct cpu_user_regs (xen-x86_64.h), in its order.
USER_REGS_64 = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
                "rax", "rcx", "rdx", "rsi", "rdi")
# struct vcpu_guest_context, x86-64 (arch-x86/xen.h): fpu_ctxt[512], flags,
# cpu_user_regs (fifteen GPRs, error_code, entry_vector, rip, cs, saved_upcall_mask,
# rflags, rsp, ss, es, ds, fs, gs: 200 bytes), trap_ctxt[256] (16 bytes each),
# ldt_base, ldt_ents, gdt_frames[16], gdt_ents, kernel_ss, kernel_sp, ctrlreg[8]
# (CR3 the kernel L4, CR1 the user L4, as xen_pfn_to_cr3), debugreg[8], the event,
# failsafe and syscall callbacks, vm_assist, fs_base, gs_base_kernel, gs_base_user.
# 5,168 bytes; offsets checked with gcc -m64.
VCPU_GUEST_CONTEXT_64 = layout(
    "vcpu_guest_context", 5168,
    flags=(512, "Q"),
    **{name: (520 + 8 * i, "Q") for i, name in enumerate(USER_REGS_64)},
    rip=(648, "Q"), cs=(656, "H"), rflags=(664, "Q"), rsp=(672, "Q"), ss=(680, "H"),
    es=(688, "H"), ds=(696, "H"), fs=(704, "H"), gs=(712, "H"),
    trap_ctxt=(720, f"{256 * TRAP_INFO_64.size}s"),
    ldt_base=(4816, "Q"), ldt_ents=(4824, "Q"), gdt_frames=(4832, "16Q"),
    gdt_ents=(4960, "Q"), kernel_ss=(4968, "Q"), kernel_sp=(4976, "Q"),
    ctrlreg=(4984, "8Q"), debugreg=(5048, "8Q"), event_callback_eip=(5112, "Q"),
    failsafe_callback_eip=(5120, "Q"), syscall_callback_eip=(5128, "Q"),
    vm_assist=(5136, "Q"), fs_base=(5144, "Q"), gs_base_kernel=(5152, "Q"),
    gs_base_user=(5160, "Q"),
)  # fmt: skip

# The failsafe callback's frame (xen/arch/x86/domain.c load_segments), lowest address
# first: RCX and R11 (the SYSRET return clobbers them), the four data selectors Xen
# could not load, then an iretq frame whose CS holds the upcall mask in bits 32-39.
FAILSAFE_FRAME_64 = ("rcx", "r11", "ds", "es", "fs", "gs", "rip", "cs", "rflags", "rsp",
                     "ss")
