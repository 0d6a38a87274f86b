// Spinlocks, and the two ways kernel code turns interrupts off: pushcli/popcli,
// which nest (xv6), and irqsave/irqrestore, which save and restore EFLAGS.IF with
// pushf and popf (Linux's local_irq_save and local_irq_restore).

#include "types.h"
#include "mmu.h"
#include "x86.h"
#include "defs.h"
#include "proc.h"
#include "spinlock.h"

void
initlock(struct spinlock *lk, const char *name)
{
  lk->name = name;
  lk->locked = 0;
}

// Interrupts stay off while a lock is held: an interrupt handler taking a lock
// its interrupted code holds would spin forever.
void
acquire(struct spinlock *lk)
{
  pushcli();
  if (holding(lk))
    panic(lk->name);
  while (xchg(&lk->locked, 1) != 0)
    ;
  __sync_synchronize();  // the critical section's loads and stores stay inside
}

void
release(struct spinlock *lk)
{
  if (!holding(lk))
    panic("release");
  __sync_synchronize();
  asm volatile("movl $0, %0" : "+m" (lk->locked));
  popcli();
}

// On one CPU a held lock is always held by us.
int
holding(struct spinlock *lk)
{
  int r;

  pushcli();
  r = lk->locked;
  popcli();
  return r;
}

// pushcli/popcli are like cli/sti except that they are matched: it takes two
// popcli to undo two pushcli, and if interrupts were off to begin with, they stay off.
void
pushcli(void)
{
  uint eflags = readeflags();

  cli();
  if (cpu.ncli == 0)
    cpu.intena = eflags & FL_IF;
  cpu.ncli++;
}

void
popcli(void)
{
  if (readeflags() & FL_IF)
    panic("popcli interruptible");
  if (--cpu.ncli < 0)
    panic("popcli");
  if (cpu.ncli == 0 && cpu.intena)
    sti();
}

uint
irqsave(void)
{
  uint flags = readeflags();

  cli();
  return flags;
}

void
irqrestore(uint flags)
{
  writeeflags(flags);
}
