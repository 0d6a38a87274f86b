// Interrupts for the probes: the 8259 pair moved to T_IRQ0, every line masked
// until a probe unmasks its own, and a count of each IRQ taken.

#include "types.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define IO_PIC1 0x20
#define IO_PIC2 0xA0
#define RTC_INDEX 0x70
#define RTC_DATA 0x71
#define RTC_REG_C 0x0C
#define IRQ_RTC 8
#define WAIT_LIMIT 200000000  // spins before a wait gives up (a missing IRQ)

volatile uint nirq[16];
volatile uchar rtc_flags[4];
static ushort mask = 0xFFFF & ~(1 << IRQ_SLAVE);

static void
setmask(void)
{
  outb(IO_PIC1 + 1, mask);
  outb(IO_PIC2 + 1, mask >> 8);
}

void
irqinit(void)
{
  outb(IO_PIC1 + 1, 0xFF);
  outb(IO_PIC2 + 1, 0xFF);
  outb(IO_PIC1, 0x11);
  outb(IO_PIC1 + 1, T_IRQ0);
  outb(IO_PIC1 + 1, 1 << IRQ_SLAVE);
  outb(IO_PIC1 + 1, 0x01);
  outb(IO_PIC2, 0x11);
  outb(IO_PIC2 + 1, T_IRQ0 + 8);
  outb(IO_PIC2 + 1, IRQ_SLAVE);
  outb(IO_PIC2 + 1, 0x01);
  setmask();
}

void
irqunmask(int irq)
{
  mask &= ~(1 << irq);
  setmask();
}

void
irqmask(int irq)
{
  mask |= 1 << irq;
  setmask();
}

// Wait with interrupts on until IRQ has been taken COUNT times in all, or give up;
// return how many of the COUNT came. QEMU's timers run on the host's clock, so a
// loaded host may deliver one more before the probe stops its source: the count is
// capped, so that the output does not depend on the host's load.
uint
waitirq(int irq, uint count)
{
  uint spins;

  for (spins = 0; nirq[irq] < count && spins < WAIT_LIMIT; spins++) {
    sti();
    hlt();
    cli();
  }
  return nirq[irq] < count ? nirq[irq] : count;
}

void
trap(struct trapframe *tf)
{
  int irq = tf->trapno - T_IRQ0;

  if (tf->trapno == T_BRKPT)
    return;
  if (irq < 0 || irq >= 16) {
    cprintf("trap: unexpected vector %d, error code 0x%x\n", tf->trapno, tf->err);
    debug_exit(1);
  }
  if (irq == IRQ_RTC) {
    outb(RTC_INDEX, RTC_REG_C);
    rtc_flags[nirq[irq] & 3] = inb(RTC_DATA);
  }
  nirq[irq]++;
  if (irq >= 8)
    outb(IO_PIC2, 0x20);
  outb(IO_PIC1, 0x20);
}
