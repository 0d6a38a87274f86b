// System call dispatch: one table from number to handler. Where a call's number,
// arguments and result are is the architecture's (sysargs.c); a bad number is the
// process's error (the call returns -1), never the kernel's.

#include "types.h"
#include "defs.h"
#include "proc.h"
#include "syscall.h"

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
  uint num = sysnum(p->tf);

  if (num < NELEM(syscalls) && syscalls[num])
    setsysret(p->tf, syscalls[num]());
  else
    setsysret(p->tf, -1);
}
