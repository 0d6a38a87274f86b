// The global descriptor table of every PC guest: flat segments, and a task state
// segment for a kernel that runs code in ring 3.

#include "types.h"
#include "mmu.h"
#include "x86.h"
#include "lib.h"

// The GDT has a page to itself, as Linux's gdt_page does: a hypervisor such as Xen
// takes descriptor tables by the page and forbids writable mappings of them, so no
// other data may share it.
struct segdesc gdt[PGSIZE / sizeof(struct segdesc)] __attribute__((aligned(PGSIZE)));

// Replace the loader's segments with flat ones for the kernel and, if the kernel runs
// code in ring 3 (ts is not 0), for ring 3 too, with the TSS ts. Every descriptor is
// written before lgdt: under Xen the table is read-only once loaded.
void
seginit(struct taskstate *ts)
{
  int nsegs = ts ? NSEGS : SEG_KDATA + 1;

  gdt[SEG_KCODE] = SEG(STA_X | STA_R, 0, 0xffffffff, DPL_KERNEL);
  gdt[SEG_KDATA] = SEG(STA_W, 0, 0xffffffff, DPL_KERNEL);
  if (ts) {
    gdt[SEG_UCODE] = SEG(STA_X | STA_R, 0, 0xffffffff, DPL_USER);
    gdt[SEG_UDATA] = SEG(STA_W, 0, 0xffffffff, DPL_USER);
    gdt[SEG_TSS] = SEG16(STS_T32A, ts, sizeof(*ts) - 1, DPL_KERNEL);
    gdt[SEG_TSS].s = 0;
  }
  lgdt(gdt, nsegs * sizeof(gdt[0]));

  // The loader's GDT may be anywhere, even in memory we are about to reuse, so every
  // segment register is reloaded. CS cannot be the target of a mov: a far jump to
  // the next instruction loads it.
  asm volatile("ljmp %0, $1f\n1:" : : "i" (SEG_KCODE << 3) : "memory");
  loadss(SEG_KDATA << 3);
  loadds(SEG_KDATA << 3);
  loades(SEG_KDATA << 3);
  loadfs(SEG_KDATA << 3);
  loadgs(SEG_KDATA << 3);

  // A trap from ring 3 switches to ss0:esp0 (the caller sets esp0, per process if it
  // has processes). An I/O map base beyond the TSS's limit means no port is open to
  // ring 3.
  if (ts) {
    ts->ss0 = SEG_KDATA << 3;
    ts->iomb = 0xFFFF;
    ltr(SEG_TSS << 3);
  }
}
