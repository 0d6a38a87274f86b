// The global descriptor table of every 64-bit PC guest: 64-bit code and data
// segments for the kernel and for ring 3, and the 64-bit TSS.
//
// In long mode a code segment's base and limit are ignored; only its L bit (64-bit
// code), DPL and type count. Descriptors as quadwords (Intel SDM vol. 3A, 3.4.5 and
// 7.2.3): limit 15:0, base 23:0, type, S, DPL, P, limit 19:16, AVL, L, D/B, G,
// base 31:24.

#include "types.h"
#include "mmu.h"
#include "x86.h"
#include "lib.h"

#define DESC_KCODE 0x00AF9A000000FFFFUL  // P, DPL 0, code execute/read, L, G
#define DESC_KDATA 0x00CF92000000FFFFUL  // P, DPL 0, data read/write, D/B, G
#define DESC_UCODE 0x00AFFA000000FFFFUL  // the same for DPL 3
#define DESC_UDATA 0x00CFF2000000FFFFUL

// The GDT has a page to itself, as Linux's gdt_page does: Xen takes descriptor
// tables by the page and forbids writable mappings of them.
uint64 gdt[PGSIZE / sizeof(uint64)] __attribute__((aligned(PGSIZE)));

// A 64-bit TSS descriptor takes two slots: the usual 8 bytes, then base 63:32.
static void
settss(struct taskstate *ts)
{
  uint64 base = (uint64)ts, limit = sizeof(*ts) - 1;

  gdt[SEG_TSS] = (limit & 0xFFFF) | (base & 0xFFFFFF) << 16 |
                 (uint64)(STS_T64A | 0x80) << 40 |  // type, P, DPL 0
                 ((limit >> 16) & 0xF) << 48 | ((base >> 24) & 0xFF) << 56;
  gdt[SEG_TSS + 1] = base >> 32;
}

// Replace the loader's segments, and load the TSS, whose stacks the caller sets:
// rsp0 for traps from ring 3, ist[] for the gates that name one. Every descriptor
// is written before lgdt: under Xen the table is read-only once loaded.
void
seginit(struct taskstate *ts)
{
  gdt[SEG_KCODE] = DESC_KCODE;
  gdt[SEG_KDATA] = DESC_KDATA;
  gdt[SEG_UDATA] = DESC_UDATA;
  gdt[SEG_UCODE] = DESC_UCODE;
  settss(ts);
  lgdt(gdt, NSEGS * sizeof(gdt[0]));

  // CS cannot be the target of a mov: a far return to the next instruction loads
  // it. SS gets the kernel's data segment; DS and ES are unused in long mode, and
  // null as on Linux, so that an iretq to ring 3 has nothing to clear.
  asm volatile("pushq %0\n"
               "leaq 1f(%%rip), %%rax\n"
               "pushq %%rax\n"
               "lretq\n"
               "1:"
               : : "i" (KCS) : "rax", "memory");
  asm volatile("movl %0, %%ss" : : "r" (KDS));
  asm volatile("movl %0, %%ds; movl %0, %%es" : : "r" (0));

  // An I/O map base beyond the TSS's limit means no port is open to ring 3.
  ts->iomb = sizeof(*ts);
  ltr(TSSSEL);
}
