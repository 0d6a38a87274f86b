// Self-tests of what a deprivileged kernel run by trap-and-emulate gets wrong
// (DESIGN.md): in ring 1, pushf shows the real IF, not the one cli cleared; popf
// silently leaves IF alone; sgdt and sidt show the hypervisor's tables. On a real
// PC, on QEMU and in a correctly paravirtualized kernel all of them pass.

#include "types.h"
#include "mmu.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"
#include "param.h"

static int
interrupts_enabled(void)
{
  return (readeflags() & FL_IF) != 0;
}

static int
cli_shows_in_pushf(void)
{
  sti();
  cli();
  return check(!interrupts_enabled());
}

// The save/restore idiom of irqsave/irqrestore: popf must give back the IF that
// pushf saved, set or clear.
static int
popf_restores_if(void)
{
  uint flags;
  int passed;

  sti();
  flags = readeflags();
  cli();
  writeeflags(flags);
  passed = check(interrupts_enabled());

  cli();
  flags = readeflags();
  sti();
  writeeflags(flags);
  passed &= check(!interrupts_enabled());
  return passed;
}

static int
sgdt_matches(void)
{
  struct pseudodesc pd;

  sgdt(&pd);
  return check(pd.base == (uintptr)gdt) &
         check(pd.limit == NSEGS * sizeof(gdt[0]) - 1);
}

static int
sidt_matches(void)
{
  struct pseudodesc pd;

  sidt(&pd);
  return check(pd.base == (uintptr)idt) &
         check(pd.limit == NIDTENTRIES * sizeof(idt[0]) - 1);
}

// Runs with no interrupt line unmasked, and leaves interrupts off.
void
selftests(void)
{
  cprintf("selftest: after cli, pushf shows IF clear %s\n",
          verdict(cli_shows_in_pushf()));
  cprintf("selftest: popf restores IF, set and clear %s\n",
          verdict(popf_restores_if()));
  cprintf("selftest: sgdt returns what lgdt loaded %s\n", verdict(sgdt_matches()));
  cprintf("selftest: sidt returns what lidt loaded %s\n", verdict(sidt_matches()));
  cli();
}
