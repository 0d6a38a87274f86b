// The two 8259A programmable interrupt controllers of the PC. The BIOS leaves
// them delivering IRQs 0-15 on vectors 8-15 and 0x70-0x77, and 8-15 are CPU
// exceptions in protected mode: picinit moves them to T_IRQ0..T_IRQ0+15.
// Register and command formats from the Intel 8259A datasheet.

#include "types.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define IO_PIC1 0x20  // master: command; +1 is data (mask)
#define IO_PIC2 0xA0  // slave

#define ICW1_INIT   0x10  // start the initialization sequence (edge triggered)
#define ICW1_ICW4   0x01  // an ICW4 follows
#define ICW4_8086   0x01  // 8086 mode, normal (not automatic) EOI
#define OCW2_EOI    0x20  // non-specific end of interrupt
#define OCW3_ISR    0x0B  // the next read of the command port returns the ISR

// Lines are unmasked one by one (picenable); the slave's cascade line always is.
static ushort irqmask = 0xFFFF & ~(1 << IRQ_SLAVE);

static void
picsetmask(ushort mask)
{
  irqmask = mask;
  outb(IO_PIC1 + 1, mask);
  outb(IO_PIC2 + 1, mask >> 8);
}

// Returns whether the masks read back as written.
int
picinit(void)
{
  picsetmask(0xFFFF);  // nothing gets through while the chips are reprogrammed

  // ICW1 on the command port, then ICW2-4 on the data port: vector base, how the
  // two chips are wired (the slave hangs off master line 2), mode.
  outb(IO_PIC1, ICW1_INIT | ICW1_ICW4);
  outb(IO_PIC1 + 1, T_IRQ0);
  outb(IO_PIC1 + 1, 1 << IRQ_SLAVE);
  outb(IO_PIC1 + 1, ICW4_8086);

  outb(IO_PIC2, ICW1_INIT | ICW1_ICW4);
  outb(IO_PIC2 + 1, T_IRQ0 + 8);
  outb(IO_PIC2 + 1, IRQ_SLAVE);
  outb(IO_PIC2 + 1, ICW4_8086);

  picsetmask(0xFFFF & ~(1 << IRQ_SLAVE));
  return check(inb(IO_PIC1 + 1) == (irqmask & 0xFF)) &
         check(inb(IO_PIC2 + 1) == irqmask >> 8);
}

void
picenable(int irq)
{
  picsetmask(irqmask & ~(1 << irq));
}

// Tell the chips the handler is done, so they deliver the next interrupt of this
// priority or lower. An IRQ from the slave is in service on both chips.
void
piceoi(int irq)
{
  if (irq >= 8)
    outb(IO_PIC2, OCW2_EOI);
  outb(IO_PIC1, OCW2_EOI);
}

// Was this IRQ 7 or 15 spurious, not in service on its chip? A spurious IRQ 15
// still went through the master's cascade line, which then needs its EOI.
int
picspurious(int irq)
{
  int port = irq < 8 ? IO_PIC1 : IO_PIC2;

  outb(port, OCW3_ISR);
  if (inb(port) & (1 << (irq & 7)))
    return 0;
  if (irq >= 8)
    outb(IO_PIC1, OCW2_EOI);
  return 1;
}
