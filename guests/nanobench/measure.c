// What nanobench and nanobench64 measure alike (nanobench.h): how a line is printed,
// and the operations whose code is the same at either width, each behind x86.h's
// wrappers of the guest's own width.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "nanobench.h"

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
  for (i = 0; i < N; i++) {
    cli();
    sti();
  }
  report("cli_sti", N, t0, rdtsc());
  cli();
}

// N writes to port 0x80, the POST port no device answers.
void
bench_port_write(void)
{
  uint64 t0;
  int i;

  t0 = rdtsc();
  for (i = 0; i < N; i++)
    outb(0x80, i);
  report("port_write", N, t0, rdtsc());
}
