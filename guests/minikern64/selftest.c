// Self-tests of the instructions a 64-bit kernel deprivileged to ring 3 (as Xen
// runs it) executes without a trap but with a wrong answer: pushfq shows the real
// IF, not the one cli cleared; popfq silently leaves IF alone; sgdt, sidt, str,
// sldt and smsw show the hypervisor's state (nothing stops them at CPL 3 without
// CR4.UMIP); and a read of CS or SS shows the privilege level in its RPL. On a real
// PC, on QEMU and in a correctly paravirtualized kernel all of them pass.

#include "types.h"
#include "mmu.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"
#include "arch.h"

static int
interrupts_enabled(void)
{
  return (readeflags() & FL_IF) != 0;
}

static int
cli_shows_in_pushfq(void)
{
  sti();
  cli();
  return check(!interrupts_enabled());
}

// The save/restore idiom of irqsave/irqrestore: popfq must give back the IF that
// pushfq saved, set or clear.
static int
popfq_restores_if(void)
{
  uint64 flags;
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
  return check(pd.base == (uint64)gdt) & check(pd.limit == NSEGS * 8 - 1);
}

static int
sidt_matches(void)
{
  struct pseudodesc pd;

  sidt(&pd);
  return check(pd.base == (uint64)idt) & check(pd.limit == NIDTENTRIES * 16 - 1);
}

// smsw gives CR0's low 16 bits: protected mode on, as the kernel sees it in CR0.
static int
smsw_matches(void)
{
  ushort msw = smsw();

  return check(msw & CR0_PE) & check(msw == (rcr0() & 0xFFFF));
}

static int
selectors_show_ring0(void)
{
  return check(rcs() == KCS) & check(rss() == KDS);
}

// Runs with no interrupt line unmasked, and leaves interrupts off.
void
selftests(void)
{
  cprintf("selftest: after cli, pushfq shows IF clear %s\n",
          verdict(cli_shows_in_pushfq()));
  cprintf("selftest: popfq restores IF, set and clear %s\n",
          verdict(popfq_restores_if()));
  cprintf("selftest: sgdt returns what lgdt loaded %s\n", verdict(sgdt_matches()));
  cprintf("selftest: sidt returns what lidt loaded %s\n", verdict(sidt_matches()));
  cprintf("selftest: str returns the tss selector ltr loaded %s\n",
          verdict(check(rtr() == TSSSEL)));
  cprintf("selftest: sldt returns the null selector, no ldt %s\n",
          verdict(check(sldt() == 0)));
  cprintf("selftest: smsw returns cr0's low bits %s\n", verdict(smsw_matches()));
  cprintf("selftest: cs and ss read as the kernel's selectors, rpl 0 %s\n",
          verdict(selectors_show_ring0()));
  cli();
}
