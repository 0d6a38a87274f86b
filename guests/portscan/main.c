// portscan: see defs.h.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

int
main(void)
{
  uartinit();
  cprintf("portscan\n");
  scan();
  fdc_probe();
  aux_probe();
  cprintf("portscan: done\n");
  debug_exit(0);
}

// The probe runs with interrupts off and sets up no IDT: any trap is a fault of
// the probe's own, reported and ended.
void
trap(struct trapframe *tf)
{
  cprintf("portscan: trap %d\n", tf->trapno);
  debug_exit(1);
}
