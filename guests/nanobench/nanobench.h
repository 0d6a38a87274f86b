// What nanobench and nanobench64 share: how many times each operation runs, the
// system-call numbers of their ring-3 loops, how they time and report an operation
// and the operations whose code is the same at either width (measure.c), so that both
// print the same lines:
//
//   nanobench: <operation> n=<count> cycles=<total>
#ifndef NANOBENCH_H
#define NANOBENCH_H

#define N          256  // operations per measurement, unless the command line says
#define MAXCOUNT   1000000  // the most a command line may ask for
#define SYS_NULL   0
#define SYS_DONE   1

#ifndef __ASSEMBLER__
#include "types.h"

static inline uint64
rdtsc(void)
{
  uint lo, hi;

  asm volatile("rdtsc" : "=a" (lo), "=d" (hi));
  return (uint64)hi << 32 | lo;
}

// The operations, in the order they run; count[] says how many times each runs: N,
// or what the Multiboot command line asks for, in words NAME=COUNT (n=COUNT for
// every operation). pvtool bench runs each operation alone this way, to tell the
// exits each one takes from the boot's (pvtool/bench/opexits.py).
enum { OP_SYSCALL, OP_CLI_STI, OP_PTE_UPDATE, OP_CR3_SWITCH, OP_PORT_WRITE,
       OP_PAGE_FAULT, OP_CTXSWITCH, NOPS };
extern int count[NOPS];
void setcounts(const char *cmdline);

// One line for OP: N operations between the time-stamp counter's reads T0 and T1.
void report(const char *op, int n, uint64 t0, uint64 t1);
void bench_cli_sti(void);
void bench_port_write(void);
#endif

#endif
