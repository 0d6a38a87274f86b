// x86-64 long mode: flags, control registers, MSRs, segments, 4-level paging and
// the 64-bit TSS and gates (Intel SDM vol. 3A, chapters 2-7; AMD APM vol. 2).
#ifndef GUESTS_MMU_H
#define GUESTS_MMU_H

#ifndef __ASSEMBLER__
#include "types.h"
#endif

// RFLAGS
#define FL_TF      0x00000100  // trap flag (single step)
#define FL_IF      0x00000200  // interrupt enable
#define FL_DF      0x00000400  // direction flag

// Control registers
#define CR0_PE     0x00000001  // protection enable
#define CR0_WP     0x00010000  // write protect (also in ring 0)
#define CR0_PG     0x80000000  // paging
#define CR4_PAE    0x00000020  // physical address extension, required by long mode

// Model-specific registers
#define MSR_EFER           0xC0000080
#define MSR_STAR           0xC0000081  // syscall/sysret segment bases
#define MSR_LSTAR          0xC0000082  // 64-bit syscall entry
#define MSR_FMASK          0xC0000084  // RFLAGS bits syscall clears
#define MSR_FS_BASE        0xC0000100
#define MSR_GS_BASE        0xC0000101
#define MSR_KERNEL_GS_BASE 0xC0000102  // what swapgs exchanges GS base with
#define EFER_SCE   0x001  // syscall/sysret enable
#define EFER_LME   0x100  // long mode enable
#define EFER_LMA   0x400  // long mode active (read only)

// GDT slots. syscall loads CS from STAR[47:32] and SS from the slot after it;
// sysretq loads SS from the slot after STAR[63:48] and CS from the one after that,
// hence user data before user code, as Linux orders them.
#define SEG_KCODE  1
#define SEG_KDATA  2
#define SEG_UDATA  3
#define SEG_UCODE  4
#define SEG_TSS    5  // a system descriptor: two slots
#define NSEGS      7

#define DPL_KERNEL 0
#define DPL_USER   3

#define KCS        (SEG_KCODE << 3)
#define KDS        (SEG_KDATA << 3)
#define UDS        ((SEG_UDATA << 3) | DPL_USER)
#define UCS        ((SEG_UCODE << 3) | DPL_USER)
#define TSSSEL     (SEG_TSS << 3)

// Gate and system segment types
#define STS_T64A   0x9  // available 64-bit TSS
#define STS_IG64   0xE  // 64-bit interrupt gate (clears IF on entry)
#define STS_TG64   0xF  // 64-bit trap gate

// 4-level paging: level 3 is the PML4, 2 the page-directory-pointer table, 1 the
// page directory, 0 the page table; each has 512 eight-byte entries.
#define PGSIZE       4096
#define NPTENTRIES   512
#define PXSHIFT(l)   (12 + 9 * (l))
#define PX(l, va)    (((uint64)(va) >> PXSHIFT(l)) & 0x1FF)
#define PTE_ADDR(e)  ((uint64)(e) & 0x000FFFFFFFFFF000UL)
#define NUSERPML4    256  // PML4 slots 0-255: the lower half, the process's own

#define PTE_P       0x001  // present
#define PTE_W       0x002  // writable
#define PTE_U       0x004  // user
#define PTE_PWT     0x008  // write-through
#define PTE_PCD     0x010  // cache disable
#define PTE_PS      0x080  // a directory entry that maps 2 MiB (1 GiB in a PDPT)

#define PGROUNDUP(a)   (((uint64)(a) + PGSIZE - 1) & ~(uint64)(PGSIZE - 1))
#define PGROUNDDOWN(a) ((uint64)(a) & ~(uint64)(PGSIZE - 1))

#ifndef __ASSEMBLER__

// What lgdt/lidt load and sgdt/sidt store: a 16-bit limit, a 64-bit base.
struct pseudodesc {
  ushort limit;
  uint64 base;
} __attribute__((packed));

// A 64-bit interrupt or trap gate (16 bytes). ist picks a stack of the TSS's
// interrupt stack table for the vector, 0 for none.
struct gatedesc {
  ushort off_15_0;
  ushort cs;
  uchar ist;
  uchar type : 4;
  uchar s : 1;
  uchar dpl : 2;
  uchar p : 1;
  ushort off_31_16;
  uint off_63_32;
  uint reserved;
};

// The 64-bit TSS: no task switching, only the stacks a privilege change or an IST
// gate switches to.
struct taskstate {
  uint reserved0;
  uint64 rsp0;     // stack for interrupts and exceptions from ring 3
  uint64 rsp1;
  uint64 rsp2;
  uint64 reserved1;
  uint64 ist[7];   // ist[0] is IST1
  uint64 reserved2;
  ushort reserved3;
  ushort iomb;     // I/O permission bitmap offset: none, past the limit
} __attribute__((packed));

#endif

#endif
