// ioheavy: the exit-heavy guest of `pvtool bench`'s comparison with QEMU. Every
// iteration of its loop writes the 16550's scratch register and reads it back (two
// port accesses, each an exit to pvtool's Python devices), while the 8254 interrupts
// at TIMER_HZ through the 8259 (each tick an interrupt delivered and an EOI written).
// How many ticks arrive depends on the machine's speed, so it is counted but never
// printed: the output is the same bytes on QEMU and pvtool.
// Register formats from the Intel 8259A and 8254 datasheets and the 16550 data sheet.

#include "types.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"

#define LOOPS      500000   // scratch-register round trips
#define TIMER_HZ   50000
#define PIT_FREQ   1193182  // the 8254's input clock, Hz
#define PIT_CH0    0x40
#define PIT_CMD    0x43
#define PIT_RATE   0x34     // channel 0, low then high byte, mode 2 (rate generator)
#define IO_PIC1    0x20     // master 8259: command; +1 is data (the mask)
#define IO_PIC2    0xA0     // slave
#define ICW1       0x11     // initialize, edge triggered, an ICW4 follows
#define ICW4_8086  0x01
#define OCW2_EOI   0x20     // non-specific end of interrupt
#define COM1_SCR   0x3FF    // COM1's scratch register: any byte, read back as written

static volatile uint ticks;

// The BIOS leaves the 8259s on vectors 8-15, CPU exceptions in protected mode: move
// them to T_IRQ0, then let only the timer through.
static void
picinit(void)
{
  outb(IO_PIC1 + 1, 0xFF);
  outb(IO_PIC2 + 1, 0xFF);
  outb(IO_PIC1, ICW1);
  outb(IO_PIC1 + 1, T_IRQ0);
  outb(IO_PIC1 + 1, 1 << 2);  // the slave hangs off master line 2
  outb(IO_PIC1 + 1, ICW4_8086);
  outb(IO_PIC2, ICW1);
  outb(IO_PIC2 + 1, T_IRQ0 + 8);
  outb(IO_PIC2 + 1, 2);       // its cascade identity
  outb(IO_PIC2 + 1, ICW4_8086);
  outb(IO_PIC1 + 1, 0xFF & ~(1 << IRQ_TIMER));
}

static void
timerinit(void)
{
  uint divisor = PIT_FREQ / TIMER_HZ;

  outb(PIT_CMD, PIT_RATE);
  outb(PIT_CH0, divisor & 0xFF);
  outb(PIT_CH0, divisor >> 8);
}

void
trap(struct trapframe *tf)
{
  if (tf->trapno == T_IRQ0 + IRQ_TIMER) {
    ticks++;
    outb(IO_PIC1, OCW2_EOI);
    return;
  }
  cprintf("ioheavy: unexpected trap %d\n", tf->trapno);
  debug_exit(1);
}

// Returns whether every byte read back as written.
static int
roundtrips(void)
{
  int i, passed = 1;

  for (i = 0; i < LOOPS; i++) {
    outb(COM1_SCR, i);
    passed &= inb(COM1_SCR) == (uchar)i;
  }
  return passed;
}

void
main(uint magic, uint mbinfo)
{
  int passed;

  (void)magic;
  (void)mbinfo;
  uartinit();
  seginit(0);
  tvinit(T_SYSCALL, 0);  // the one gate ring 3 may use: ioheavy runs nothing there
  idtinit();
  picinit();
  timerinit();
  sti();
  passed = check(roundtrips());
  cli();
  cprintf("ioheavy: %d scratch-register round trips %s\n", LOOPS, verdict(passed));
  cprintf("ioheavy: the timer interrupted %s\n", verdict(check(ticks > 0)));
  checkexit("ioheavy");
}
