// Self-tests beyond minikern's (selftest.c: pushf and popf with IF, sgdt, sidt) of
// what a 64-bit kernel deprivileged to ring 3, as Xen runs it, executes without a
// trap but with a wrong answer: str, sldt and smsw show the hypervisor's state
// (nothing stops them at CPL 3 without CR4.UMIP), and a read of CS or SS shows the
// privilege level in its RPL. On a real PC, on QEMU and in a correctly
// paravirtualized kernel all of them pass.

#include "types.h"
#include "mmu.h"
#include "x86.h"
#include "lib.h"
#include "arch.h"

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

void
selftests64(void)
{
  cprintf("selftest: str returns the tss selector ltr loaded %s\n",
          verdict(check(rtr() == TSSSEL)));
  cprintf("selftest: sldt returns the null selector, no ldt %s\n",
          verdict(check(sldt() == 0)));
  cprintf("selftest: smsw returns cr0's low bits %s\n", verdict(smsw_matches()));
  cprintf("selftest: cs and ss read as the kernel's selectors, rpl 0 %s\n",
          verdict(selectors_show_ring0()));
}
