// The C side of every trap (alltraps, in guests/lib/trapasm.S, calls trap()): system
// calls, device interrupts, and exceptions, which kill a user process that causes
// one and stop the kernel if the kernel does.

#include "types.h"
#include "mmu.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"
#include "memlayout.h"
#include "proc.h"

extern char ustart[], uend[];  // user program text (kernel.ld)

static const char *excnames[] = {
  [T_DIVIDE]  = "divide error",
  [T_DEBUG]   = "debug exception",
  [T_NMI]     = "non-maskable interrupt",
  [T_BRKPT]   = "breakpoint",
  [T_OFLOW]   = "overflow",
  [T_BOUND]   = "bound range exceeded",
  [T_ILLOP]   = "invalid opcode",
  [T_DEVICE]  = "device not available",
  [T_DBLFLT]  = "double fault",
  [T_TSS]     = "invalid tss",
  [T_SEGNP]   = "segment not present",
  [T_STACK]   = "stack fault",
  [T_GPFLT]   = "general protection fault",
  [T_PGFLT]   = "page fault",
  [T_FPERR]   = "x87 floating-point error",
  [T_ALIGN]   = "alignment check",
  [T_MCHK]    = "machine check",
  [T_SIMDERR] = "simd floating-point error",
};

// Page-fault error code bits (SDM vol. 3A, 4.7).
#define PF_PROT  0x1  // the page was present: a protection violation
#define PF_WRITE 0x2  // the access was a write

static int
fromuser(struct trapframe *tf)
{
  return (tf->cs & 3) == DPL_USER;
}

static const char *
excname(uint trapno)
{
  if (trapno < NELEM(excnames) && excnames[trapno])
    return excnames[trapno];
  return "unexpected trap";
}

// Where a faulting address lies, in words, never as a number: addresses differ
// between a native and a paravirtualized run.
static const char *
region(uint va)
{
  if (va >= (uint)ustart && va < (uint)uend)
    return "program text";
  if (va >= KERNLINK && va < PHYSTOP)
    return "kernel memory";
  if (va >= UMAPBASE && va < UMAPTOP)
    return "an unmapped page";
  return "unmapped memory";
}

// An exception in ring 3 is the process's error: say what it did and kill it.
// One in the kernel is the kernel's: stop.
static void
exception(struct trapframe *tf)
{
  struct proc *p = myproc();

  if (!fromuser(tf) || p == 0) {
    cprintf("trap: %s in the kernel\n", excname(tf->trapno));
    panic("kernel trap");
  }
  if (tf->trapno == T_PGFLT)
    cprintf("trap: pid %d (%s) %s: %s %s, killed\n", p->pid, p->name,
            excname(tf->trapno), tf->err & PF_WRITE ? "write to" : "read of",
            region(rcr2()));
  else
    cprintf("trap: pid %d (%s) %s, killed\n", p->pid, p->name, excname(tf->trapno));
  p->killed = 1;
}

// A device interrupt. The master 8259 reports a spurious IRQ 7 and the slave a
// spurious IRQ 15 when a request goes away before it is acknowledged; those get no
// EOI on their own chip.
static void
devintr(int irq)
{
  if ((irq == IRQ_SPUR1 || irq == IRQ_SPUR2) && picspurious(irq))
    return;
  if (irq == IRQ_TIMER)
    timerintr();
  piceoi(irq);
}

void
trap(struct trapframe *tf)
{
  struct proc *p = myproc();

  if (tf->trapno == T_SYSCALL) {
    if (p->killed)
      exitproc(-1);
    p->tf = tf;
    syscall();
    if (p->killed)
      exitproc(-1);
    return;
  }

  if (tf->trapno >= T_IRQ0 && tf->trapno < T_IRQ0 + NIRQS)
    devintr(tf->trapno - T_IRQ0);
  else
    exception(tf);

  // A process killed while in ring 3 dies now; one killed while in the kernel
  // (in a system call) dies when the system call returns.
  if (p && p->killed && fromuser(tf))
    exitproc(-1);

  // Round robin: every clock tick takes the CPU from the running process.
  if (p && p->state == RUNNING && tf->trapno == T_IRQ0 + IRQ_TIMER) {
    p->preempts++;
    yieldcpu();
  }

  if (p && p->killed && fromuser(tf))
    exitproc(-1);
}
