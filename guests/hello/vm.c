// hello's page tables: an identity map of the first 4 MiB, which holds the whole
// kernel.

#include "types.h"
#include "mmu.h"
#include "x86.h"
#include "defs.h"

// One directory and one table; both must be page aligned (their addresses go in
// CR3 and in a directory entry, which keep only bits 31-12).
static pde_t pgdir[NPDENTRIES] __attribute__((aligned(PGSIZE)));
static pte_t pgtab[NPTENTRIES] __attribute__((aligned(PGSIZE)));

pde_t *kpgdir;

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
