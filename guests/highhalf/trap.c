// highhalf's interrupt handler: the APIC timer, the keyboard, the disk, the serial
// port, the APIC's own spurious and error vectors; anything else ends the run.

#include "types.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

volatile uint ticks;
volatile uint nirq[256];

void
trap(struct trapframe *tf)
{
  nirq[tf->trapno]++;
  switch (tf->trapno) {
  case T_IRQ0:
    ticks++;
    lapiceoi();
    return;
  case T_IRQ0 + IRQ_KBD:
    kbdintr();
    lapiceoi();
    return;
  case T_IRQ0 + IRQ_IDE:
    ideintr();
    lapiceoi();
    return;
  case T_IRQ0 + IRQ_COM1:
    uartintr();
    lapiceoi();
    return;
  case T_IRQ0 + IRQ_SPURIOUS:  // no EOI for the spurious vector
    return;
  case T_IRQ0 + IRQ_ERROR:
    lapiceoi();
    return;
  }
  cprintf("highhalf: unexpected vector %d, error code 0x%x, at 0x%x\n", tf->trapno,
          tf->err, tf->eip);
  debug_exit(1);
}
