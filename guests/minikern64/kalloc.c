// Physical memory allocator, for page tables, kernel stacks and user pages: a free
// list of 4 KiB pages, from the end of the kernel image up to PHYSTOP, each known
// by its kernel address, KERNBASE + its physical address (V2P gives that back).

#include "types.h"
#include "mmu.h"
#include "defs.h"
#include "kernbase.h"
#include "memlayout.h"
#include "spinlock.h"

extern char end[];  // first address after the kernel image (kernel.ld)

struct run {
  struct run *next;
};

static struct {
  struct spinlock lock;
  struct run *freelist;
  int nfree;
} kmem;

void
kinit(void)
{
  char *p;

  initlock(&kmem.lock, "kmem");
  for (p = (char *)PGROUNDUP(end); p + PGSIZE <= (char *)P2V(PHYSTOP); p += PGSIZE)
    kfree(p);
}

// Give back the page at v, filled with junk first, so that code still using it
// fails loudly instead of reading stale data.
void
kfree(char *v)
{
  struct run *r;

  if ((uint64)v % PGSIZE || v < end || V2P(v) >= PHYSTOP)
    panic("kfree");
  memset(v, 1, PGSIZE);

  acquire(&kmem.lock);
  r = (struct run *)v;
  r->next = kmem.freelist;
  kmem.freelist = r;
  kmem.nfree++;
  release(&kmem.lock);
}

// A page, or 0 if memory is exhausted. Its contents are junk.
char *
kalloc(void)
{
  struct run *r;

  acquire(&kmem.lock);
  if ((r = kmem.freelist) != 0) {
    kmem.freelist = r->next;
    kmem.nfree--;
  }
  release(&kmem.lock);
  return (char *)r;
}

int
kfreecount(void)
{
  int n;

  acquire(&kmem.lock);
  n = kmem.nfree;
  release(&kmem.lock);
  return n;
}
