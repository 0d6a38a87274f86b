// hello's interrupt descriptor table and its C trap handler.

#include "types.h"
#include "mmu.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

static struct gatedesc idt[NIDTENTRIES];
extern uint vectors[];  // trapasm.S: the address of each vector's stub
static uint ntraps[NIDTENTRIES];

// Point every gate at its stub and load the IDT. All gates are interrupt gates
// usable only by the kernel, except the breakpoint: int3 is raised on purpose
// (by debuggers, and by hello's own check), so, as in Linux, any ring may raise it.
void
tvinit(void)
{
  int i;

  for (i = 0; i < NIDTENTRIES; i++)
    SETGATE(idt[i], 0, SEG_KCODE << 3, vectors[i], DPL_KERNEL);
  SETGATE(idt[T_BRKPT], 0, SEG_KCODE << 3, vectors[T_BRKPT], DPL_USER);
  lidt(idt, sizeof(idt));
}

// Called from alltraps. A breakpoint is counted and execution resumes after the
// int3 (the CPU saved the address of the next instruction). Anything else means
// hello went wrong: say which vector, without addresses, and fail.
void
trap(struct trapframe *tf)
{
  ntraps[tf->trapno]++;
  if (tf->trapno == T_BRKPT)
    return;
  cprintf("trap: unexpected vector %d, error code 0x%x\n", tf->trapno, tf->err);
  debug_exit(1);
}

uint
trapcount(int trapno)
{
  return ntraps[trapno];
}
