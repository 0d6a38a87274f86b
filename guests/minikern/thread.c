// The x86-32 half of making a process (proc.c has the rest, and proc.h says what
// each function gives it).

#include "types.h"
#include "mmu.h"
#include "x86.h"
#include "defs.h"
#include "memlayout.h"
#include "proc.h"

struct context *
firstcontext(char *sp)
{
  struct context *c;

  sp -= 4;
  *(uint *)sp = (uint)trapret;
  sp -= sizeof(*c);
  c = (struct context *)sp;
  memset(c, 0, sizeof(*c));
  c->eip = (uint)forkret;
  return c;
}

void
startuser(struct trapframe *tf, void (*entry)(void), char *stack)
{
  // Should entry return, it returns to an address no one maps, and faults.
  *(uint *)(stack + PGSIZE - 4) = 0xFFFFFFFF;

  memset(tf, 0, sizeof(*tf));
  tf->cs = (SEG_UCODE << 3) | DPL_USER;
  tf->ds = (SEG_UDATA << 3) | DPL_USER;
  tf->es = tf->ds;
  tf->fs = tf->ds;
  tf->gs = tf->ds;
  tf->ss = tf->ds;
  tf->eflags = FL_IF;
  tf->esp = USTACKTOP - 4;
  tf->eip = (uint)entry;
}
