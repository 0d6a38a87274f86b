// What nanobench and nanobench64 measure alike (nanobench.h): how a line is printed,
// and the operations whose code is the same at either width, each behind x86.h's
// wrappers of the guest's own width.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "nanobench.h"

static const char *opname[NOPS] = {
  "syscall", "cli_sti", "pte_update", "cr3_switch", "port_write", "page_fault",
  "ctxswitch",
};

int count[NOPS] = { N, N, N, N, N, N, N };

// Whether the word at w begins with name and then '='.
static int
named(const char *w, const char *name)
{
  while (*name && *w == *name) {
    w++;
    name++;
  }
  return *name == 0 && *w == '=';
}

// The count after the '=' of the word at w; -1 unless it is digits up to the word's
// end and at most MAXCOUNT.
static int
wordcount(const char *w)
{
  int n = 0;

  while (*w++ != '=')
    ;
  if (*w == 0 || *w == ' ')
    return -1;
  for (; *w && *w != ' '; w++) {
    if (*w < '0' || *w > '9' || n > (MAXCOUNT - (*w - '0')) / 10)
      return -1;
    n = n * 10 + (*w - '0');
  }
  return n;
}

// Words NAME=COUNT of cmdline set count[]; n=COUNT sets every operation's. Other
// words (the kernel's path comes first) are not this guest's business.
void
setcounts(const char *cmdline)
{
  const char *w;
  int i, n;

  for (w = cmdline; *w; w++) {
    if (w != cmdline && w[-1] != ' ')
      continue;
    for (i = 0; i < NOPS; i++) {
      if ((named(w, opname[i]) || named(w, "n")) && (n = wordcount(w)) >= 0)
        count[i] = n;
    }
  }
}

// cycles is the time-stamp counter's delta, saturated at 2^32 - 1 (printf has no
// 64-bit conversion).
void
report(const char *op, int n, uint64 t0, uint64 t1)
{
  uint64 delta = t1 - t0;

  cprintf("nanobench: %s n=%d cycles=%u\n", op, n,
          delta > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint)delta);
}

// N cli; sti pairs, from and back to interrupts off.
void
bench_cli_sti(void)
{
  uint64 t0;
  int i;

  cli();
  t0 = rdtsc();
  for (i = 0; i < count[OP_CLI_STI]; i++) {
    cli();
    sti();
  }
  report("cli_sti", count[OP_CLI_STI], t0, rdtsc());
  cli();
}

// N writes to port 0x80, the POST port no device answers.
void
bench_port_write(void)
{
  uint64 t0;
  int i;

  t0 = rdtsc();
  for (i = 0; i < count[OP_PORT_WRITE]; i++)
    outb(0x80, i);
  report("port_write", count[OP_PORT_WRITE], t0, rdtsc());
}
