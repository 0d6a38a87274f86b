// hello's C trap handler, which alltraps (guests/lib/trapasm.S) calls.

#include "types.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

static uint ntraps[NIDTENTRIES];

// A breakpoint is counted and execution resumes after the int3 (the CPU saved the
// address of the next instruction). Anything else means hello went wrong: say which
// vector, without addresses, and fail.
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
