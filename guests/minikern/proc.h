// Processes and the one CPU that runs them.
#ifndef MINIKERN_PROC_H
#define MINIKERN_PROC_H

#include "types.h"
#include "mmu.h"
#include "param.h"
#include "lib.h"

enum procstate { UNUSED, EMBRYO, SLEEPING, RUNNABLE, RUNNING, ZOMBIE };

struct proc {
  enum procstate state;
  int pid;
  char name[16];
  pde_t *pgdir;              // this process's address space
  char *kstack;              // bottom of its kernel stack
  struct trapframe *tf;      // trap frame of the current system call
  struct context *context;   // swtch() here to run the process
  void *chan;                // if SLEEPING, what it waits for
  int killed;                // exit at the next return to user mode
  int xstate;                // exit status; -1 if killed
  int nmapped;               // pages it holds through map()
  int preempts;              // times the timer took the CPU from it
  int loglen;                // bytes in log
  int logfull;               // it wrote more than log holds
  char log[LOGSIZE];         // what it wrote (sys_write)
};

// The CPU: xv6's struct cpu without the multiprocessor parts.
struct cpu {
  struct context *scheduler;  // swtch() here to enter the scheduler
  struct taskstate ts;        // gives the stack for traps from ring 3
  int ncli;                   // depth of pushcli nesting
  int intena;                 // were interrupts enabled before pushcli?
  struct proc *proc;          // the running process, or 0
};

extern struct cpu cpu;

// thread.c: the architecture's half of a new process. firstcontext lays out, below
// sp (the process's trap frame), the return address trapret and a context that
// returns into forkret; startuser fills the trap frame so that trapret enters entry
// in ring 3 with interrupts on, on the user stack whose top page the kernel sees at
// stack.
struct context *firstcontext(char *sp);
void startuser(struct trapframe *tf, void (*entry)(void), char *stack);
void forkret(void);

#endif
