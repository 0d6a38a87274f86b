// hhpse: a higher-half kernel on 4 MiB pages, then on page tables of its own. It is
// linked at 0xC0100000 and entered at its physical address with paging off; entry.S
// turns on paging with two 4 MiB pages (the first 4 MiB at 0 and at KERNBASE), then
// main hands the pages after the kernel to an allocator, builds page tables for
// PHYSTOP bytes at KERNBASE in 4 KiB pages, remaps a page and flushes it with invlpg,
// and maps a page on demand from its page-fault handler. It uses COM1 and
// isa-debug-exit only (no APIC), so a paravirtualized PC can run it too.

#include "types.h"
#include "mmu.h"
#include "multiboot.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "memlayout.h"

#define TESTVA  0x40000000  // remapped under invlpg
#define FAULTVA 0x50000000  // mapped by the page-fault handler
#define MARK(c) (0x5AFE0000 | (c))

extern char entry[], end[];

// The page directory entry.S switches to: the first 4 MiB at 0 (where we run until
// the jump to main) and at KERNBASE, as 4 MiB pages.
__attribute__((aligned(PGSIZE))) pde_t entrypgdir[NPDENTRIES] = {
  [0] = PTE_P | PTE_W | PTE_PS,
  [KERNBASE >> PDXSHIFT] = PTE_P | PTE_W | PTE_PS,
};

static pde_t *kpgdir;
static uint faults, faultva;

// The allocator: a free list of the pages from the kernel's end to 4 MiB, which the
// 4 MiB page at KERNBASE maps before main has tables of its own (as xv6's kinit1).
struct run { struct run *next; };
static struct run *freelist;
static uint nfree;

static void
kinit(void)
{
  char *p;

  for (p = (char *)PGROUNDUP((uint)end); p + PGSIZE <= (char *)P2V(4 << 20); p += PGSIZE) {
    ((struct run *)p)->next = freelist;
    freelist = (struct run *)p;
    nfree++;
  }
}

static void *
kalloc(void)
{
  struct run *r = freelist;
  uint *w;

  if (r == 0)
    return 0;
  freelist = r->next;
  nfree--;
  for (w = (uint *)r; w < (uint *)r + PGSIZE / 4; w++)
    *w = 0;
  return r;
}

// The entry of VA's page in pgdir, its page table allocated if need be (xv6's walkpgdir).
static pte_t *
walkpgdir(pde_t *pgdir, uint va)
{
  pde_t *pde = &pgdir[PDX(va)];
  pte_t *pgtab;

  if (*pde & PTE_P)
    return (pte_t *)P2V(PTE_ADDR(*pde)) + PTX(va);
  pgtab = kalloc();
  *pde = V2P(pgtab) | PTE_P | PTE_W;
  return pgtab + PTX(va);
}

// PHYSTOP bytes at KERNBASE in 4 KiB pages, and nothing at 0 any more.
static void
kvmalloc(void)
{
  uint pa;

  kpgdir = kalloc();
  for (pa = 0; pa < PHYSTOP; pa += PGSIZE)
    *walkpgdir(kpgdir, KERNBASE + pa) = pa | PTE_P | PTE_W;
  lcr3(V2P(kpgdir));
}

void
trap(struct trapframe *tf)
{
  if (tf->trapno == T_PGFLT && rcr2() == FAULTVA && faults == 0) {
    faults++;
    faultva = rcr2();
    *walkpgdir(kpgdir, FAULTVA) = V2P(kalloc()) | PTE_P | PTE_W;
    return;
  }
  cprintf("hhpse: unexpected vector %d, error code %x, at %x\n", tf->trapno, tf->err,
          tf->eip);
  debug_exit(1);
}

// A page at TESTVA, then another in its place: invlpg makes the CPU see the new one.
static int
remap(void)
{
  uint *a = kalloc(), *b = kalloc();
  volatile uint *va = (uint *)TESTVA;
  pte_t *pte = walkpgdir(kpgdir, TESTVA);
  uint first, second;

  *a = MARK('a');
  *b = MARK('b');
  *pte = V2P(a) | PTE_P | PTE_W;
  first = *va;
  *pte = V2P(b) | PTE_P | PTE_W;
  invlpg((void *)TESTVA);
  second = *va;
  return check(first == MARK('a')) & check(second == MARK('b'));
}

int
main(uint magic, struct multiboot_info *mbi)
{
  static volatile uint probe = MARK('p');
  uint before, high, low, pages;
  volatile uint *fault = (uint *)FAULTVA;

  (void)mbi;
  uartinit();
  seginit(0);
  tvinit(T_SYSCALL, 0);
  idtinit();
  cprintf("hhpse: linked at %x, entered at physical %x with paging off %s\n",
          KERNBASE + 0x100000, V2P(entry),
          verdict(check(magic == MULTIBOOT_BOOTLOADER_MAGIC)));
  high = probe;
  low = *(volatile uint *)V2P(&probe);
  cprintf("pse: 4 MiB pages map the kernel at %x and at 0 %s\n", KERNBASE,
          verdict(check(high == MARK('p')) & check(low == MARK('p'))));
  kinit();
  before = nfree;
  kvmalloc();
  pages = before - nfree;
  cprintf("paging: %d KiB at %x in 4 KiB pages, %d page-table pages allocated %s\n",
          PHYSTOP >> 10, KERNBASE, pages,
          verdict(check(pages == 1 + (PHYSTOP >> PDXSHIFT)) & check(probe == MARK('p'))));
  cprintf("invlpg: a page remapped at %x %s\n", TESTVA, verdict(remap()));
  before = *fault;
  cprintf("fault: %d page fault at %x, mapped by its handler %s\n", faults, faultva,
          verdict(check(faults == 1) & check(before == 0)));
  *fault = MARK('f');
  cprintf("fault: the new page holds what was written %s\n",
          verdict(check(*fault == MARK('f'))));
  checkexit("hhpse");
}
