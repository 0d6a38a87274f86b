// hello's segments and page tables: a flat GDT, and an identity map of the first
// 4 MiB, which holds the whole kernel.

#include "types.h"
#include "mmu.h"
#include "x86.h"
#include "defs.h"

// The GDT has a page to itself, as Linux's gdt_page does: a hypervisor such as Xen
// takes descriptor tables by the page and forbids writable mappings of them, so no
// other data may share it.
static struct segdesc gdt[PGSIZE / sizeof(struct segdesc)]
  __attribute__((aligned(PGSIZE)));

// One directory and one table; both must be page aligned (their addresses go in
// CR3 and in a directory entry, which keep only bits 31-12).
static pde_t pgdir[NPDENTRIES] __attribute__((aligned(PGSIZE)));
static pte_t pgtab[NPTENTRIES] __attribute__((aligned(PGSIZE)));

pde_t *kpgdir;

// Replace the loader's segments with our own flat ones. The loader's GDT may be
// anywhere, even in memory we are about to reuse, so every segment register is
// reloaded from ours.
void
seginit(void)
{
  gdt[SEG_KCODE] = SEG(STA_X | STA_R, 0, 0xffffffff, DPL_KERNEL);
  gdt[SEG_KDATA] = SEG(STA_W, 0, 0xffffffff, DPL_KERNEL);
  lgdt(gdt, NSEGS * sizeof(gdt[0]));

  // CS cannot be the target of a mov: a far jump to the next instruction loads it.
  asm volatile("ljmp %0, $1f\n1:" : : "i" (SEG_KCODE << 3) : "memory");
  loadss(SEG_KDATA << 3);
  loadds(SEG_KDATA << 3);
  loades(SEG_KDATA << 3);
  loadfs(SEG_KDATA << 3);
  loadgs(SEG_KDATA << 3);
}

// Map virtual == physical for the first 4 MiB with 4 KiB pages and turn paging on.
// Until CR0.PG is set the tables are plain memory, so they are filled first.
void
kvminit(void)
{
  uint i;

  for (i = 0; i < NPTENTRIES; i++)
    pgtab[i] = (i * PGSIZE) | PTE_P | PTE_W;
  pgdir[0] = (uint)pgtab | PTE_P | PTE_W;
  kpgdir = pgdir;

  lcr3((uint)pgdir);
  lcr0(rcr0() | CR0_PG);
}
