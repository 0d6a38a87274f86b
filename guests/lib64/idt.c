// The interrupt descriptor table of every 64-bit PC guest: 16-byte gates pointing
// at the stubs of trapasm.S. System calls come by syscall, not through a gate, so
// ring 3 may raise no vector with int n.

#include "types.h"
#include "mmu.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"

// The IDT has a page to itself, for the same reason as the GDT (gdt.c).
struct gatedesc idt[NIDTENTRIES] __attribute__((aligned(PGSIZE)));
extern uint64 vectors[];  // trapasm.S: the address of each vector's stub

static void
setgate(struct gatedesc *g, uint64 handler, int ist)
{
  g->off_15_0 = handler & 0xFFFF;
  g->cs = KCS;
  g->ist = ist;
  g->type = STS_IG64;
  g->s = 0;
  g->dpl = DPL_KERNEL;
  g->p = 1;
  g->off_31_16 = (handler >> 16) & 0xFFFF;
  g->off_63_32 = handler >> 32;
  g->reserved = 0;
}

// Interrupt gates everywhere (IF off in every handler until it turns it on). A
// double fault may come from a kernel stack that is itself the problem: it gets a
// known good stack, the TSS's interrupt stack dfist.
void
tvinit(int dfist)
{
  int i;

  for (i = 0; i < NIDTENTRIES; i++)
    setgate(&idt[i], vectors[i], i == T_DBLFLT ? dfist : 0);
}

void
idtinit(void)
{
  lidt(idt, sizeof(idt));
}
