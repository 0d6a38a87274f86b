// The C side of every trap (alltraps, in guests/lib64/trapasm.S, and syscallentry
// in syscallasm.S call trap()): system calls, device interrupts, and exceptions,
// which kill a user process that causes one and stop the kernel if the kernel does.

#include "types.h"
#include "mmu.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"
#include "kernbase.h"
#include "memlayout.h"
#include "proc.h"
#include "arch.h"

extern char ustart[], uend[];  // user program text (kernel.ld)

// Exceptions by vector (Intel SDM vol. 3A, table 6-1); 0 where none is defined.
static const char *excnames[] = {
  "divide error", "debug exception", "non-maskable interrupt", "breakpoint",
  "overflow", "bound range exceeded", "invalid opcode", "device not available",
  "double fault", 0, "invalid tss", "segment not present", "stack fault",
  "general protection fault", "page fault", 0, "x87 floating-point error",
  "alignment check", "machine check", "simd floating-point error",
};

// Page-fault error code bits (SDM vol. 3A, 4.7).
#define PF_WRITE 0x2  // the access was a write

struct cpulocal cpulocal;

// Where sysretq returns to: its CS is this base's slot + 2, its SS the slot + 1.
#define SYSRET_BASE ((SEG_UDATA - 1) << 3)

// System calls by syscall (EFER.SCE): enter at syscallentry on the kernel's code
// segment with interrupts and single-stepping off. The kernel runs with GS's base
// at its per-CPU block; swapgs gives ring 3 its own (0) and back.
void
syscallinit(void)
{
  wrmsr(MSR_STAR, (uint64)SYSRET_BASE << 48 | (uint64)KCS << 32);
  wrmsr(MSR_LSTAR, (uint64)syscallentry);
  wrmsr(MSR_FMASK, FL_IF | FL_TF | FL_DF);
  wrmsr(MSR_GS_BASE, (uint64)&cpulocal);
  wrmsr(MSR_KERNEL_GS_BASE, 0);
  wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
}

static int
fromuser(struct trapframe *tf)
{
  return (tf->cs & 3) == DPL_USER;
}

static const char *
excname(uint64 trapno)
{
  if (trapno < NELEM(excnames) && excnames[trapno])
    return excnames[trapno];
  return "unexpected trap";
}

// Where a faulting address lies, in words, never as a number: addresses differ
// between a native and a paravirtualized run.
static const char *
region(uint64 va)
{
  if (va >= (uint64)ustart && va < (uint64)uend)
    return "program text";
  if (va >= (uint64)P2V(KERNLINK) && va < (uint64)P2V(PHYSTOP))
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

// A device interrupt through the 8259 pair. The master reports a spurious IRQ 7
// and the slave a spurious IRQ 15; those get no EOI on their own chip.
static void
devintr(int irq)
{
  if ((irq == IRQ_SPUR1 || irq == IRQ_SPUR2) && picspurious(irq))
    return;
  if (irq == IRQ_TIMER)
    timerintr();
  piceoi(irq);
}

static void
systemcall(struct proc *p, struct trapframe *tf)
{
  if (p->killed)
    exitproc(-1);
  p->tf = tf;
  syscall();
  if (p->killed)
    exitproc(-1);
}

void
trap(struct trapframe *tf)
{
  struct proc *p = myproc();

  if (tf->trapno == T_SYSCALL) {
    systemcall(p, tf);
    return;
  }

  if (tf->trapno >= T_IRQ0 && tf->trapno < T_IRQ0 + NIRQS)
    devintr(tf->trapno - T_IRQ0);
  else if (tf->trapno == T_LAPICTIMER)
    lapicintr();
  else if (tf->trapno != T_LAPICSPUR)  // a spurious APIC interrupt takes no EOI
    exception(tf);

  // A process killed while in ring 3 dies now; one killed in a system call dies
  // when the call returns.
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
