// The clock: channel 0 of the 8254 programmable interval timer, wired to IRQ 0,
// interrupting HZ times a second. Each tick wakes sleepers (sys_sleep) and takes
// the CPU from the running process (trap.c). Port formats from the Intel 8254
// datasheet.

#include "types.h"
#include "traps.h"
#include "x86.h"
#include "defs.h"
#include "param.h"
#include "spinlock.h"

#define PIT_CH0   0x40        // channel 0 counter
#define PIT_CMD   0x43        // mode/command register
#define PIT_FREQ  1193182     // the PIT's input clock, Hz

#define PIT_SEL0  0x00        // command: channel 0
#define PIT_LOHI  0x30        // the count follows as low byte, then high byte
#define PIT_RATE  0x04        // mode 2, rate generator: one pulse per period

struct spinlock tickslock;
uint ticks;

void
timerinit(void)
{
  uint count = (PIT_FREQ + HZ / 2) / HZ;

  initlock(&tickslock, "time");
  outb(PIT_CMD, PIT_SEL0 | PIT_LOHI | PIT_RATE);
  outb(PIT_CH0, count & 0xFF);
  outb(PIT_CH0, count >> 8);
  picenable(IRQ_TIMER);
}

void
timerintr(void)
{
  acquire(&tickslock);
  ticks++;
  wakeup(&ticks);
  release(&tickslock);
}

uint
readticks(void)
{
  uint t;

  acquire(&tickslock);
  t = ticks;
  release(&tickslock);
  return t;
}
