// The 8259's interrupt request register (8259A datasheet, OCW3): a line's edge
// latches there whether or not the line is masked, so a probe can see a device
// raise it without taking the interrupt.

#include "types.h"
#include "x86.h"
#include "defs.h"

#define OCW3_READ_IRR 0x0A

static ushort
pic_port(int irq)
{
  return irq < 8 ? 0x20 : 0xA0;
}

int
irq_requested(int irq)
{
  ushort port = pic_port(irq);

  outb(port, OCW3_READ_IRR);
  return (inb(port) >> (irq & 7)) & 1;
}
