// The trap() of a guest that loads no IDT of its own and so expects no trap: any trap
// is a fault of the guest's, reported and ended. A guest that handles traps defines
// trap() itself, which replaces this weak one.

#include "types.h"
#include "x86.h"
#include "lib.h"

__attribute__((weak)) void
trap(struct trapframe *tf)
{
  cprintf("unexpected trap %d, error code 0x%x\n", tf->trapno, tf->err);
  debug_exit(1);
}
