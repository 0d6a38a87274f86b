// The interrupt descriptor table of every PC guest, its gates pointing at the stubs
// of trapasm.S.

#include "types.h"
#include "mmu.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"

// The IDT has a page to itself, for the same reason as the GDT (gdt.c).
struct gatedesc idt[PGSIZE / sizeof(struct gatedesc)] __attribute__((aligned(PGSIZE)));
extern uint vectors[];  // trapasm.S: the address of each vector's stub

// Every vector gets an interrupt gate that only the kernel may raise with int n,
// except usergate, which ring 3 may raise too. If istrap, that one is a trap gate, so
// interrupts stay on while the kernel works for ring 3 (a system call).
void
tvinit(int usergate, int istrap)
{
  int i;

  for (i = 0; i < NIDTENTRIES; i++)
    SETGATE(idt[i], 0, SEG_KCODE << 3, vectors[i], DPL_KERNEL);
  SETGATE(idt[usergate], istrap, SEG_KCODE << 3, vectors[usergate], DPL_USER);
}

void
idtinit(void)
{
  lidt(idt, NIDTENTRIES * sizeof(idt[0]));
}
