// The x86-64 half of making a process (minikern's proc.c has the rest, and its
// proc.h says what each function gives it).

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

  sp -= sizeof(uint64);
  *(uint64 *)sp = (uint64)trapret;
  sp -= sizeof(*c);
  c = (struct context *)sp;
  memset(c, 0, sizeof(*c));
  c->rip = (uint64)forkret;
  return c;
}

void
startuser(struct trapframe *tf, void (*entry)(void), char *stack)
{
  // Should entry return, it returns to address 0, which no one maps, and faults.
  // The stack is as a call leaves it: RSP + 8 a multiple of 16 (SysV ABI).
  *(uint64 *)(stack + PGSIZE - 8) = 0;

  memset(tf, 0, sizeof(*tf));
  tf->cs = UCS;
  tf->ss = UDS;
  tf->rflags = FL_IF;
  tf->rsp = USTACKTOP - 8;
  tf->rip = (uint64)entry;
}
