// System call dispatch. A user program puts the call's number in RAX and its
// arguments in RDI, RSI, RDX, R10, R8 and R9, as Linux's x86-64 ABI has them, and
// executes syscall (usys.S); the result comes back in RAX. A bad pointer or number
// is the process's error (the call returns -1), never the kernel's.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"
#include "proc.h"
#include "syscall.h"

#define NARGS 6

// The nth argument register as the process left it (syscallasm.S saved them all).
static uint64
argraw(int n)
{
  struct trapframe *tf = myproc()->tf;
  uint64 regs[NARGS] = { tf->rdi, tf->rsi, tf->rdx, tf->r10, tf->r8, tf->r9 };

  return regs[n];
}

int
argint(int n, int *ip)
{
  if (n < 0 || n >= NARGS)
    return -1;
  *ip = argraw(n);
  return 0;
}

// The nth argument, a pointer to a block of size bytes that ring 3 can read. A
// process's memory lies below 4 GiB (memlayout.h), so a pointer above is refused
// before its pages are checked.
int
argptr(int n, char **pp, int size)
{
  uint64 va;

  if (n < 0 || n >= NARGS || size < 0)
    return -1;
  va = argraw(n);
  if (va >> 32 || !uvmaccessible(myproc()->pgdir, va, size))
    return -1;
  *pp = (char *)va;
  return 0;
}

// sysproc.c
extern int sys_exit(void);
extern int sys_write(void);
extern int sys_getpid(void);
extern int sys_yield(void);
extern int sys_sleep(void);
extern int sys_uptime(void);
extern int sys_map(void);
extern int sys_unmap(void);

static int (*syscalls[])(void) = {
  [SYS_exit]    = sys_exit,
  [SYS_write]   = sys_write,
  [SYS_getpid]  = sys_getpid,
  [SYS_yield]   = sys_yield,
  [SYS_sleep]   = sys_sleep,
  [SYS_uptime]  = sys_uptime,
  [SYS_map]     = sys_map,
  [SYS_unmap]   = sys_unmap,
};

void
syscall(void)
{
  struct proc *p = myproc();
  uint64 num = p->tf->rax;

  if (num < NELEM(syscalls) && syscalls[num])
    p->tf->rax = (uint64)(long)syscalls[num]();
  else
    p->tf->rax = -1;
}
