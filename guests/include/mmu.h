// Definitions for the x86 memory management unit: EFLAGS and control register bits,
// segment and gate descriptors, page table entries. Layouts follow xv6's mmu.h and
// the Intel SDM vol. 3A (chapters 3-6).
#ifndef GUESTS_MMU_H
#define GUESTS_MMU_H

// EFLAGS
#define FL_IF      0x00000200  // interrupt enable

// CR0
#define CR0_PE     0x00000001  // protection enable
#define CR0_WP     0x00010000  // write protect (also in ring 0)
#define CR0_PG     0x80000000  // paging

// GDT slots (guests/lib/gdt.c): a null descriptor, flat kernel code and data, flat
// user code and data, and the task state segment. A kernel that runs nothing in
// ring 3 loads only the first three.
#define SEG_KCODE  1
#define SEG_KDATA  2
#define SEG_UCODE  3
#define SEG_UDATA  4
#define SEG_TSS    5
#define NSEGS      6

// Application segment type bits
#define STA_X      0x8  // executable
#define STA_W      0x2  // writable (data)
#define STA_R      0x2  // readable (code)

// System segment types
#define STS_T32A   0x9  // available 32-bit TSS
#define STS_IG32   0xE  // 32-bit interrupt gate (clears IF on entry)
#define STS_TG32   0xF  // 32-bit trap gate (leaves IF alone)

#define DPL_KERNEL 0
#define DPL_USER   3

// Paging: 2-level, 4 KiB pages, 1024 entries per table.
#define PGSIZE      4096
#define NPDENTRIES  1024
#define NPTENTRIES  1024
#define PTXSHIFT    12
#define PDXSHIFT    22
#define PDX(va)     (((uint)(va) >> PDXSHIFT) & 0x3FF)
#define PTX(va)     (((uint)(va) >> PTXSHIFT) & 0x3FF)
#define PTE_ADDR(e) ((uint)(e) & ~0xFFF)

#define PTE_P       0x001  // present
#define PTE_W       0x002  // writable
#define PTE_U       0x004  // user
#define PTE_PWT     0x008  // write-through
#define PTE_PCD     0x010  // cache disable
#define PTE_PS      0x080  // a page directory entry that maps 4 MiB (with CR4_PSE)

#define CR4_PSE     0x00000010  // 4 MiB pages

#define PGROUNDUP(a)   (((uint)(a) + PGSIZE - 1) & ~(PGSIZE - 1))
#define PGROUNDDOWN(a) ((uint)(a) & ~(PGSIZE - 1))

#ifndef __ASSEMBLER__
#include "types.h"

// Segment descriptor (SDM vol. 3A, 3.4.5).
struct segdesc {
  uint lim_15_0 : 16;
  uint base_15_0 : 16;
  uint base_23_16 : 8;
  uint type : 4;
  uint s : 1;          // 1 = application segment, 0 = system
  uint dpl : 2;
  uint p : 1;          // present
  uint lim_19_16 : 4;
  uint avl : 1;
  uint rsv1 : 1;
  uint db : 1;         // 1 = 32-bit
  uint g : 1;          // limit counts 4 KiB units
  uint base_31_24 : 8;
};

// A 32-bit segment with 4 KiB granularity: lim is in bytes.
#define SEG(type, base, lim, dpl) (struct segdesc) {                    \
  ((lim) >> 12) & 0xffff, (uint)(base) & 0xffff,                       \
  ((uint)(base) >> 16) & 0xff, type, 1, dpl, 1,                         \
  (uint)(lim) >> 28, 0, 0, 1, 1, (uint)(base) >> 24 }

// Interrupt or trap gate (SDM vol. 3A, 6.11).
struct gatedesc {
  uint off_15_0 : 16;
  uint cs : 16;
  uint args : 5;
  uint rsv1 : 3;
  uint type : 4;       // STS_IG32 or STS_TG32
  uint s : 1;          // must be 0 (system)
  uint dpl : 2;        // lowest privilege that may raise it with int n
  uint p : 1;
  uint off_31_16 : 16;
};

// A segment with byte granularity, for system segments such as the TSS (whose
// limit is its size in bytes). The caller clears .s for a system segment.
#define SEG16(type, base, lim, dpl) (struct segdesc) {                  \
  (lim) & 0xffff, (uint)(base) & 0xffff,                                \
  ((uint)(base) >> 16) & 0xff, type, 1, dpl, 1,                         \
  (uint)(lim) >> 16, 0, 0, 1, 0, (uint)(base) >> 24 }

// 32-bit task state segment (SDM vol. 3A, 7.2.1). A kernel with ring-3 processes
// uses only ss0:esp0, the stack the CPU switches to on a trap from user mode, and
// iomb, the offset of the I/O permission bitmap (beyond the limit: no user I/O).
struct taskstate {
  uint link;
  uint esp0;
  ushort ss0;
  ushort padding1;
  uint *esp1;
  ushort ss1;
  ushort padding2;
  uint *esp2;
  ushort ss2;
  ushort padding3;
  void *cr3;
  uint *eip;
  uint eflags;
  uint eax;
  uint ecx;
  uint edx;
  uint ebx;
  uint *esp;
  uint *ebp;
  uint esi;
  uint edi;
  ushort es;
  ushort padding4;
  ushort cs;
  ushort padding5;
  ushort ss;
  ushort padding6;
  ushort ds;
  ushort padding7;
  ushort fs;
  ushort padding8;
  ushort gs;
  ushort padding9;
  ushort ldt;
  ushort padding10;
  ushort t;            // trap on task switch
  ushort iomb;         // I/O map base address
};

#define SETGATE(gate, istrap, sel, off, d)            \
{                                                     \
  (gate).off_15_0 = (uint)(off) & 0xffff;             \
  (gate).cs = (sel);                                  \
  (gate).args = 0;                                    \
  (gate).rsv1 = 0;                                    \
  (gate).type = (istrap) ? STS_TG32 : STS_IG32;       \
  (gate).s = 0;                                       \
  (gate).dpl = (d);                                   \
  (gate).p = 1;                                       \
  (gate).off_31_16 = (uint)(off) >> 16;               \
}

#endif  // __ASSEMBLER__
#endif
