// The parts of Xen's 64-bit PV ABI xenhello64 uses, typed from ../shared/XEN-ABI64.md
// and XEN-ABI.md, which cite Xen's public headers (xen/include/public: xen.h,
// arch-x86/xen.h, arch-x86/xen-x86_64.h, elfnote.h, sched.h, event_channel.h,
// callback.h, io/console.h). The layouts are those of an LP64 guest: a C `long` is
// Xen's `unsigned long` and xen_pfn_t.
#ifndef XENHELLO64_XEN_H
#define XENHELLO64_XEN_H

// ELF notes (elfnote.h; XEN-ABI.md "Boot").
#define XEN_ELFNOTE_ENTRY          1
#define XEN_ELFNOTE_HYPERCALL_PAGE 2
#define XEN_ELFNOTE_VIRT_BASE      3
#define XEN_ELFNOTE_PADDR_OFFSET   4
#define XEN_ELFNOTE_XEN_VERSION    5
#define XEN_ELFNOTE_GUEST_OS       6
#define XEN_ELFNOTE_LOADER         8
#define XEN_ELFNOTE_PAE_MODE       9
#define XEN_ELFNOTE_FEATURES       10
#define XEN_ELFNOTE_HV_START_LOW   12

// Linux's 64-bit values (XEN-ABI64.md 1.8): the kernel is linked at __START_KERNEL_map,
// where the builder maps pseudo-physical 0; Xen's own area starts at L4 slot 256.
#define VIRT_BASE     0xFFFFFFFF80000000
#define HV_START_LOW  0xFFFF800000000000

// Hypercall numbers (XEN-ABI.md "Hypercall numbers").
#define __HYPERVISOR_set_trap_table    0
#define __HYPERVISOR_mmu_update        1
#define __HYPERVISOR_stack_switch      3
#define __HYPERVISOR_set_callbacks     4
#define __HYPERVISOR_update_va_mapping 14
#define __HYPERVISOR_set_timer_op      15
#define __HYPERVISOR_xen_version       17
#define __HYPERVISOR_console_io        18
#define __HYPERVISOR_iret              23
#define __HYPERVISOR_set_segment_base  25
#define __HYPERVISOR_mmuext_op         26
#define __HYPERVISOR_sched_op          29
#define __HYPERVISOR_callback_op       30
#define __HYPERVISOR_event_channel_op  32

// Flat selectors of a 64-bit PV guest (XEN-ABI.md "Selectors"): kernel and user
// both run in ring 3.
#define FLAT_KERNEL_CS64 0xe033
#define FLAT_KERNEL_SS   0xe02b
#define FLAT_USER_CS64   0xe033
#define FLAT_USER_SS     0xe02b

// HYPERVISOR_iret's flags word (XEN-ABI64.md 1.3): return as sysret would.
#define VGCF_in_syscall  0x100

#ifndef __ASSEMBLER__

typedef unsigned char  u8;
typedef unsigned short u16;
typedef unsigned int   u32;
typedef unsigned long  u64;

#define CONSOLEIO_write     0
#define SCHEDOP_block       1
#define SCHEDOP_shutdown    2
#define SHUTDOWN_poweroff   0
#define SHUTDOWN_crash      3
#define EVTCHNOP_bind_virq  1
#define EVTCHNOP_send       4
#define EVTCHNOP_unmask     9
#define VIRQ_TIMER          0
#define XENVER_version      0
#define UVMF_INVLPG         2
#define CALLBACKOP_register 0
#define CALLBACKTYPE_syscall 2
#define CALLBACKF_mask_events 1
#define SEGBASE_GS_USER     1  // XEN-ABI64.md 1.7
#define SEGBASE_GS_KERNEL   2
#define MMU_NORMAL_PT_UPDATE 0
#define MMUEXT_NEW_USER_BASEPTR 15
#define DOMID_SELF          0x7FF0

// Page-table entry bits (the x86 ones; XEN-ABI64.md 1.8 for what a guest may set).
#define PTE_P  0x001
#define PTE_W  0x002
#define PTE_U  0x004
#define PTE_A  0x020
#define PTE_D  0x040

// start_info (1168 bytes on 64-bit; XEN-ABI.md "Structures", bracketed offsets).
struct start_info {
  char magic[32];        // "xen-3.0-x86_64"
  u64 nr_pages;
  u64 shared_info;       // machine address
  u32 flags;
  u64 store_mfn;
  u32 store_evtchn;
  u64 console_mfn;       // console.domU.mfn, @72
  u32 console_evtchn;
  u64 pt_base;           // virtual address of the boot L4
  u64 nr_pt_frames;
  u64 mfn_list;          // virtual address of the p2m array: mfn by pfn
  u64 mod_start;
  u64 mod_len;
  char cmd_line[1024];
  u64 first_p2m_pfn;
  u64 nr_p2m_frames;
};

struct vcpu_time_info {
  u32 version;           // odd while Xen updates the rest
  u32 pad0;
  u64 tsc_timestamp;
  u64 system_time;       // ns
  u32 tsc_to_system_mul;
  signed char tsc_shift;
  char pad1[3];
};

// vcpu_info (64 bytes): the event mask the kernel keeps instead of IF, and CR2.
struct vcpu_info {
  u8 evtchn_upcall_pending;
  u8 evtchn_upcall_mask;
  u64 evtchn_pending_sel;   // @8
  u64 cr2;                  // arch.cr2, @16
  u64 arch_pad;
  struct vcpu_time_info time;  // @32
};

// shared_info: 2-level event channels of 64 words of 64 ports.
struct shared_info {
  struct vcpu_info vcpu_info[32];
  u64 evtchn_pending[64];   // @2048
  u64 evtchn_mask[64];      // @2560
  u32 wc_version;           // @3072
  u32 wc_sec;
  u32 wc_nsec;
};

// trap_info (16 bytes): flags bits 0-1 are the DPL allowed to raise it with int n.
struct trap_info {
  u8 vector;
  u8 flags;
  u16 cs;
  u64 address;              // @8
};

struct callback_register {
  u16 type;
  u16 flags;
  u64 address;              // @8
};

struct evtchn_bind_virq {
  u32 virq;
  u32 vcpu;
  u32 port;                 // out
};

struct mmu_update {
  u64 ptr;                  // machine address of the entry; low 2 bits: the command
  u64 val;
};

struct mmuext_op {
  u32 cmd;
  u64 arg1;                 // mfn or linear address, @8
  u64 arg2;
};

struct xencons_interface {
  char in[1024];
  char out[2048];
  u32 in_cons, in_prod;
  u32 out_cons, out_prod;
};

_Static_assert(__builtin_offsetof(struct start_info, shared_info) == 40, "start_info");
_Static_assert(__builtin_offsetof(struct start_info, console_mfn) == 72, "start_info");
_Static_assert(sizeof(struct start_info) == 1168, "start_info");
_Static_assert(sizeof(struct vcpu_info) == 64, "vcpu_info");
_Static_assert(__builtin_offsetof(struct shared_info, evtchn_mask) == 2560, "shared_info");
_Static_assert(__builtin_offsetof(struct shared_info, wc_version) == 3072, "shared_info");
_Static_assert(sizeof(struct trap_info) == 16, "trap_info");
_Static_assert(sizeof(struct callback_register) == 16, "callback_register");
_Static_assert(sizeof(struct mmuext_op) == 24, "mmuext_op");
_Static_assert(__builtin_offsetof(struct xencons_interface, out_prod) == 3084, "console");

#endif
#endif
