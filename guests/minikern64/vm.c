// Address spaces, with 4-level page tables.
//
// Every process has its own PML4. Its upper half holds one entry, slot 511, the
// kernel's: the top 2 GiB, where the kernel is linked (KERNBASE) and reaches
// physical memory up to PHYSTOP at KERNBASE + the physical address. That entry
// points at tables built once by kvminit and shared by every PML4, as Linux shares
// its kernel half. The lower half, the process's stack and the pages it map()s,
// has tables of its own. The boot tables' identity map of low memory is gone once
// the kernel's PML4 is loaded.

#include "types.h"
#include "mmu.h"
#include "x86.h"
#include "defs.h"
#include "kernbase.h"
#include "memlayout.h"
#include "param.h"
#include "proc.h"
#include "apic.h"
#include "arch.h"

extern char ustart[], uend[];  // user program text (kernel.ld)
extern char data[];            // first page of kernel data (kernel.ld)

pde_t *kpgdir;  // the kernel's own PML4, used when no process runs

// The page-table entry of pml4 that maps va: a walk down levels 3 to 1. If alloc,
// create missing tables; their entries allow everything and each page's entry
// decides, as on Linux.
static pte_t *
walkpgdir(pde_t *pml4, uint64 va, int alloc)
{
  pte_t *table = pml4, *pte;
  char *next;
  int level;

  for (level = 3; level > 0; level--) {
    pte = &table[PX(level, va)];
    if (*pte & PTE_P) {
      table = P2V(PTE_ADDR(*pte));
      continue;
    }
    if (!alloc || (next = kalloc()) == 0)
      return 0;
    memset(next, 0, PGSIZE);
    *pte = V2P(next) | PTE_P | PTE_W | PTE_U;
    table = (pte_t *)next;
  }
  return &table[PX(0, va)];
}

// Map [va, va + size) to physical [pa, pa + size). va and size are page aligned.
static int
mappages(pde_t *pml4, uint64 va, uint64 size, uint64 pa, int perm)
{
  pte_t *pte;
  uint64 a;

  for (a = va; a < va + size; a += PGSIZE, pa += PGSIZE) {
    if ((pte = walkpgdir(pml4, a, 1)) == 0)
      return -1;
    if (*pte & PTE_P)
      panic("remap");
    *pte = pa | perm | PTE_P;
  }
  return 0;
}

// The kernel's mappings: what ring 0 may write, and what ring 3 may read. Each
// maps to KERNBASE's physical counterpart, but the local APIC's (phys set).
static struct kmap {
  uint64 start;
  uint64 end;
  uint64 phys;
  int perm;
} kmap[] = {
  { (uint64)P2V(KERNLINK), (uint64)ustart,   0,            0 },      // Multiboot
  { (uint64)ustart,        (uint64)uend,     0,            PTE_U },  // user text
  { (uint64)uend,          (uint64)data,     0,            0 },      // kernel text
  { (uint64)data,          (uint64)P2V(PHYSTOP), 0,        PTE_W },  // data, free
  { LAPICVA,               LAPICVA + PGSIZE, LAPIC_BASE,   PTE_W | PTE_PCD | PTE_PWT },
};

// Build the kernel's tables, 4 KiB pages only, and load them. CR0.WP makes
// read-only pages read-only for the kernel too.
void
kvminit(void)
{
  struct kmap *k;
  uint64 phys;

  if ((kpgdir = (pde_t *)kalloc()) == 0)
    panic("kvminit");
  memset(kpgdir, 0, PGSIZE);
  for (k = kmap; k < &kmap[NELEM(kmap)]; k++) {
    phys = k->phys ? k->phys : V2P(k->start);
    if (mappages(kpgdir, k->start, k->end - k->start, phys, k->perm) < 0)
      panic("kvminit");
  }
  switchkvm();
  lcr0(rcr0() | CR0_WP);
}

// A new address space holding only the kernel.
pde_t *
setupuvm(void)
{
  pde_t *pml4;

  if ((pml4 = (pde_t *)kalloc()) == 0)
    return 0;
  memmove(pml4, kpgdir, PGSIZE);
  return pml4;
}

// Give an address space its user stack, zeroed. Returns the kernel's address of
// the stack's top page, or 0.
char *
allocustack(pde_t *pml4)
{
  uint64 va;

  for (va = USTACKTOP - USTACKSIZE; va < USTACKTOP; va += PGSIZE)
    if (uvmmap(pml4, va) < 0)
      return 0;
  return P2V(PTE_ADDR(*walkpgdir(pml4, USTACKTOP - PGSIZE, 0)));
}

// Run on p's kernel stack and in p's address space: traps from ring 3 (TSS.rsp0)
// and system calls (syscallasm.S) switch to the top of its kernel stack. Loading
// CR3 flushes the TLB of the previous process's user mappings.
void
switchuvm(struct proc *p)
{
  pushcli();
  cpu.ts.rsp0 = (uint64)p->kstack + KSTACKSIZE;
  cpulocal.kstack = cpu.ts.rsp0;
  lcr3(V2P(p->pgdir));
  popcli();
}

// Back to the kernel's own PML4, while no process runs.
void
switchkvm(void)
{
  lcr3(V2P(kpgdir));
}

// Map a zeroed page at user address va, which must not be mapped yet.
int
uvmmap(pde_t *pml4, uint va)
{
  pte_t *pte = walkpgdir(pml4, va, 0);
  char *mem;

  if (pte && (*pte & PTE_P))
    return -1;
  if ((mem = kalloc()) == 0)
    return -1;
  memset(mem, 0, PGSIZE);
  if (mappages(pml4, va, PGSIZE, V2P(mem), PTE_W | PTE_U) < 0) {
    kfree(mem);
    return -1;
  }
  return 0;
}

// Unmap and free the user page at va. pml4 is the running process's, whose
// translation of va the TLB may still hold: invlpg drops it, or the process could
// go on using a page that is already someone else's.
int
uvmunmap(pde_t *pml4, uint va)
{
  pte_t *pte = walkpgdir(pml4, va, 0);
  uint64 pa;

  if (pte == 0 || !(*pte & PTE_P) || !(*pte & PTE_U))
    return -1;
  pa = PTE_ADDR(*pte);
  *pte = 0;
  invlpg((void *)(uint64)va);
  kfree(P2V(pa));
  return 0;
}

// May ring 3 read [va, va + len) in pml4? System calls check every user pointer
// so that a process cannot make the kernel read kernel memory on its behalf.
int
uvmaccessible(pde_t *pml4, uint va, uint len)
{
  uint64 a, last = (uint64)va + len - 1;
  pte_t *pte;

  if (len == 0)
    return 1;
  for (a = PGROUNDDOWN(va); a <= last; a += PGSIZE) {
    pte = walkpgdir(pml4, a, 0);
    if (pte == 0 || (*pte & (PTE_P | PTE_U)) != (PTE_P | PTE_U))
      return 0;
  }
  return 1;
}

// Free what entry e of a level-`level` table maps: the table below it, the tables
// below that, and at the bottom the pages.
static void
freetable(pte_t e, int level)
{
  pte_t *table = P2V(PTE_ADDR(e));
  int i;

  for (i = 0; i < NPTENTRIES; i++) {
    if (!(table[i] & PTE_P))
      continue;
    if (level > 1)
      freetable(table[i], level - 1);
    else
      kfree(P2V(PTE_ADDR(table[i])));
  }
  kfree((char *)table);
}

// Free an address space that is not loaded in CR3: its user pages, its tables and
// the PML4. The kernel's half is shared and stays.
void
freevm(pde_t *pml4)
{
  int i;

  for (i = 0; i < NUSERPML4; i++)
    if (pml4[i] & PTE_P)
      freetable(pml4[i], 3);
  kfree((char *)pml4);
}
