// Address spaces.
//
// Every process has its own page directory. The kernel's part of it, the entries
// for [KERNLINK, PHYSTOP), points at page tables built once by kvminit and shared
// by every directory, as Linux shares its kernel half; the rest, the process's
// stack and the pages it map()s, has page tables of its own.

#include "types.h"
#include "mmu.h"
#include "x86.h"
#include "defs.h"
#include "memlayout.h"
#include "param.h"
#include "proc.h"

extern char ustart[], uend[];  // user program text (kernel.ld)
extern char data[];            // first page of kernel data (kernel.ld)

pde_t *kpgdir;  // the kernel's own directory, used when no process runs

// The entry of pgdir's page table that maps va. If alloc, create a missing page
// table; the directory entry allows everything and each page's entry decides, as
// on Linux.
static pte_t *
walkpgdir(pde_t *pgdir, uint va, int alloc)
{
  pde_t *pde = &pgdir[PDX(va)];
  pte_t *pgtab;

  if (*pde & PTE_P) {
    pgtab = (pte_t *)PTE_ADDR(*pde);
  } else {
    if (!alloc || (pgtab = (pte_t *)kalloc()) == 0)
      return 0;
    memset(pgtab, 0, PGSIZE);
    *pde = (uint)pgtab | PTE_P | PTE_W | PTE_U;
  }
  return &pgtab[PTX(va)];
}

// Map [va, va + size) to [pa, pa + size). va and size are page aligned.
static int
mappages(pde_t *pgdir, uint va, uint size, uint pa, int perm)
{
  pte_t *pte;
  uint a;

  for (a = va; a < va + size; a += PGSIZE, pa += PGSIZE) {
    if ((pte = walkpgdir(pgdir, a, 1)) == 0)
      return -1;
    if (*pte & PTE_P)
      panic("remap");
    *pte = pa | perm | PTE_P;
  }
  return 0;
}

// The kernel's mappings, identity: what ring 0 may write, and what ring 3 may read.
static struct kmap {
  char *start;
  char *end;
  int perm;
} kmap[] = {
  { (char *)KERNLINK, ustart,          0 },            // Multiboot header
  { ustart,           uend,            PTE_U },        // user program text
  { uend,             data,            0 },            // kernel text and rodata
  { data,             (char *)PHYSTOP, PTE_W },        // kernel data, free memory
};

// Build the kernel's page tables, 4 KiB pages only, and turn paging on. Until
// CR0.PG is set the tables are plain memory, so they are filled first. CR0.WP
// makes read-only pages read-only for the kernel too.
void
kvminit(void)
{
  struct kmap *k;

  if ((kpgdir = (pde_t *)kalloc()) == 0)
    panic("kvminit");
  memset(kpgdir, 0, PGSIZE);
  for (k = kmap; k < &kmap[NELEM(kmap)]; k++)
    if (mappages(kpgdir, (uint)k->start, k->end - k->start, (uint)k->start,
                 k->perm) < 0)
      panic("kvminit");
  switchkvm();
  lcr0(rcr0() | CR0_PG | CR0_WP);
}

// A new address space holding only the kernel.
pde_t *
setupuvm(void)
{
  pde_t *pgdir;

  if ((pgdir = (pde_t *)kalloc()) == 0)
    return 0;
  memmove(pgdir, kpgdir, PGSIZE);
  return pgdir;
}

// Give an address space its user stack, zeroed. Returns the kernel's address of
// the stack's top page, or 0.
char *
allocustack(pde_t *pgdir)
{
  uint va;

  for (va = USTACKTOP - USTACKSIZE; va < USTACKTOP; va += PGSIZE)
    if (uvmmap(pgdir, va) < 0)
      return 0;
  return (char *)PTE_ADDR(*walkpgdir(pgdir, USTACKTOP - PGSIZE, 0));
}

// Run on p's kernel stack and in p's address space. Loading CR3 flushes the TLB
// of the previous process's user mappings.
void
switchuvm(struct proc *p)
{
  pushcli();
  cpu.ts.esp0 = (uint)p->kstack + KSTACKSIZE;
  lcr3((uint)p->pgdir);
  popcli();
}

// Back to the kernel's own directory, while no process runs.
void
switchkvm(void)
{
  lcr3((uint)kpgdir);
}

// Map a zeroed page at user address va, which must not be mapped yet.
int
uvmmap(pde_t *pgdir, uint va)
{
  pte_t *pte = walkpgdir(pgdir, va, 0);
  char *mem;

  if (pte && (*pte & PTE_P))
    return -1;
  if ((mem = kalloc()) == 0)
    return -1;
  memset(mem, 0, PGSIZE);
  if (mappages(pgdir, va, PGSIZE, (uint)mem, PTE_W | PTE_U) < 0) {
    kfree(mem);
    return -1;
  }
  return 0;
}

// Unmap and free the user page at va. pgdir is the running process's, whose
// translation of va the TLB may still hold: invlpg drops it, or the process could
// go on using a page that is already someone else's.
int
uvmunmap(pde_t *pgdir, uint va)
{
  pte_t *pte = walkpgdir(pgdir, va, 0);
  uint pa;

  if (pte == 0 || !(*pte & PTE_P) || !(*pte & PTE_U))
    return -1;
  pa = PTE_ADDR(*pte);
  *pte = 0;
  invlpg((void *)va);
  kfree((char *)pa);
  return 0;
}

// May ring 3 read [va, va + len) in pgdir? System calls check every user pointer
// so that a process cannot make the kernel read kernel memory on its behalf.
int
uvmaccessible(pde_t *pgdir, uint va, uint len)
{
  uint a, last = va + len - 1;
  pte_t *pte;

  if (len == 0)
    return 1;
  if (last < va)
    return 0;
  for (a = PGROUNDDOWN(va); a <= PGROUNDDOWN(last); a += PGSIZE) {
    pte = walkpgdir(pgdir, a, 0);
    if (pte == 0 || (*pte & (PTE_P | PTE_U)) != (PTE_P | PTE_U))
      return 0;
    if (a == PGROUNDDOWN(last))  // the last page may be the very top of memory
      break;
  }
  return 1;
}

// Free an address space that is not loaded in CR3: its user pages, its page tables,
// and the directory. The kernel's page tables are shared and stay.
void
freevm(pde_t *pgdir)
{
  pte_t *pgtab;
  uint i, j;

  for (i = 0; i < NPDENTRIES; i++) {
    if (!(pgdir[i] & PTE_P) || pgdir[i] == kpgdir[i])
      continue;
    pgtab = (pte_t *)PTE_ADDR(pgdir[i]);
    for (j = 0; j < NPTENTRIES; j++)
      if (pgtab[j] & PTE_P)
        kfree((char *)PTE_ADDR(pgtab[j]));
    kfree((char *)pgtab);
  }
  kfree((char *)pgdir);
}
