// The HPET at 0xFED00000 (IA-PC HPET specification 1.0a, section 2.3): its
// capabilities, the main counter, and timers 0 and 1 interrupting through the
// legacy replacement routes (timer 0 on IRQ 0, timer 1 on IRQ 8), one-shot and
// periodic, in 64- and 32-bit mode.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define HPET 0xFED00000
#define CAP_ID 0x000
#define PERIOD 0x004
#define CONFIG 0x010
#define STATUS 0x020
#define COUNTER 0x0F0
#define TIMER(n) (0x100 + 0x20 * (n))
#define CMP 0x08
#define CONFIG_ENABLE 0x1
#define CONFIG_LEGACY 0x2
#define T_LEVEL 0x2
#define T_ENABLE 0x4
#define T_PERIODIC 0x8
#define T_VAL_SET 0x40
#define T_32BIT 0x100
#define IRQ_TIMER 0
#define IRQ_RTC 8

static uint
rd(uint reg)
{
  return *(volatile uint *)(HPET + reg);
}

static void
wr(uint reg, uint value)
{
  *(volatile uint *)(HPET + reg) = value;
}

void
hpet_start(void)
{
  wr(CONFIG, rd(CONFIG) | CONFIG_ENABLE);
}

void
hpet_delay(uint ticks)
{
  uint start = rd(COUNTER);

  while (rd(COUNTER) - start < ticks)
    ;
}

static void
registers(void)
{
  uint i, ntimers = (rd(CAP_ID) >> 8 & 0x1F) + 1;

  cprintf("hpet: id %x period %x config %x status %x counter %x %x\n", rd(CAP_ID),
          rd(PERIOD), rd(CONFIG), rd(STATUS), rd(COUNTER), rd(COUNTER + 4));
  for (i = 0; i < ntimers + 1; i++)
    cprintf("hpet timer %d: config %x %x comparator %x %x route %x %x\n", i,
            rd(TIMER(i)), rd(TIMER(i) + 4), rd(TIMER(i) + CMP), rd(TIMER(i) + CMP + 4),
            rd(TIMER(i) + 0x10), rd(TIMER(i) + 0x14));
  wr(COUNTER, 0x1000);
  wr(COUNTER + 4, 1);
  cprintf("hpet: counter written while halted %x %x\n", rd(COUNTER), rd(COUNTER + 4));
  wr(COUNTER, 0);
  wr(COUNTER + 4, 0);
  wr(TIMER(0), 0xFFFFFFFF);
  wr(TIMER(0) + 4, 0xFFFFFFFF);
  wr(TIMER(1), T_32BIT | T_PERIODIC);
  wr(TIMER(1) + CMP + 4, 0x55);
  cprintf("hpet: all ones in timer 0 %x %x; timer 1 32-bit %x comparator %x %x\n",
          rd(TIMER(0)), rd(TIMER(0) + 4), rd(TIMER(1)), rd(TIMER(1) + CMP),
          rd(TIMER(1) + CMP + 4));
  wr(TIMER(0), 0);
  wr(TIMER(1), 0);
  wr(CONFIG, 0xFFFFFFFF);
  cprintf("hpet: config all ones %x\n", rd(CONFIG));
  wr(CONFIG, 0);
}

static void
counting(void)
{
  uint a, b;

  hpet_start();
  a = rd(COUNTER);
  hpet_delay(1000);
  b = rd(COUNTER);
  cprintf("hpet: counter moves %d\n", b - a >= 1000);
  wr(CONFIG, 0);
  a = rd(COUNTER);
  hpet_delay(0);
  b = rd(COUNTER);
  cprintf("hpet: counter stops when disabled %d\n", a == b);
}

// Timer N through its legacy route: one interrupt one-shot, then three periodic.
static void
interrupts(int n, int irq, uint extra)
{
  uint now, taken;

  wr(CONFIG, CONFIG_LEGACY);
  wr(STATUS, 0xFF);
  nirq[irq] = 0;
  irqunmask(irq);
  wr(TIMER(n), T_ENABLE | extra);
  now = rd(COUNTER);
  wr(TIMER(n) + CMP, now + 100000);
  wr(TIMER(n) + CMP + 4, 0);
  hpet_start();
  taken = waitirq(irq, 1);
  cprintf("hpet timer %d one-shot: irq %d taken %d status %x\n", n, irq, taken, rd(STATUS));
  wr(TIMER(n), T_ENABLE | T_PERIODIC | T_VAL_SET | extra);
  wr(TIMER(n) + CMP, rd(COUNTER) + 50000);
  wr(TIMER(n) + CMP + 4, 0);
  wr(TIMER(n) + CMP, 50000);
  taken = waitirq(irq, 4);
  wr(TIMER(n), 0);
  cprintf("hpet timer %d periodic: irq %d taken %d\n", n, irq, taken);
  irqmask(irq);
  wr(CONFIG, 0);
}

// Timer 2 level-triggered: its status bit stays set until written back.
static void
level_status(void)
{
  wr(CONFIG, 0);
  wr(TIMER(2), T_LEVEL);
  wr(TIMER(2) + CMP, rd(COUNTER) + 1000);
  wr(TIMER(2) + CMP + 4, 0);
  hpet_start();
  hpet_delay(3000);
  cprintf("hpet timer 2 level, not enabled: status %x\n", rd(STATUS));
  wr(TIMER(2), 0);
  wr(CONFIG, 0);
}

void
hpet_probe(void)
{
  registers();
  counting();
  interrupts(0, IRQ_TIMER, 0);
  interrupts(1, IRQ_RTC, T_32BIT);
  level_status();
  hpet_start();  // the other probes time themselves with it
}
