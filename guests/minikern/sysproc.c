// The system calls. Each fetches its arguments (syscall.c) and returns a value
// for EAX; -1 means the call was refused.

#include "types.h"
#include "mmu.h"
#include "x86.h"
#include "defs.h"
#include "memlayout.h"
#include "param.h"
#include "proc.h"
#include "spinlock.h"

int
sys_exit(void)
{
  int status;

  if (argint(0, &status) < 0)
    status = -1;
  exitproc(status);
}

int
sys_getpid(void)
{
  return myproc()->pid;
}

int
sys_yield(void)
{
  yieldcpu();
  return 0;
}

// Sleep for n clock ticks.
int
sys_sleep(void)
{
  int n;
  uint ticks0;

  if (argint(0, &n) < 0 || n < 0)
    return -1;
  acquire(&tickslock);
  ticks0 = ticks;
  while (ticks - ticks0 < (uint)n) {
    if (myproc()->killed) {
      release(&tickslock);
      return -1;
    }
    sleepon(&ticks, &tickslock);
  }
  release(&tickslock);
  return 0;
}

// Clock ticks since the timer started.
int
sys_uptime(void)
{
  return readticks();
}

// write(fd, buf, n): fd 1 is the process's console. Its bytes go to the process's
// own log, not straight to the UART, and the kernel prints the logs in pid order
// once every process has exited: processes run concurrently, and output that
// interleaved as the clock happened to preempt them would differ from run to run.
int
sys_write(void)
{
  struct proc *p = myproc();
  char *buf;
  int fd, n, i;

  if (argint(0, &fd) < 0 || argint(2, &n) < 0 || argptr(1, &buf, n) < 0)
    return -1;
  if (fd != 1)
    return -1;
  for (i = 0; i < n; i++) {
    if (p->loglen == LOGSIZE) {
      p->logfull = 1;
      break;
    }
    p->log[p->loglen++] = buf[i];
  }
  return n;
}

// The page a map or unmap call names: page aligned, in the map() region.
static int
argmapva(int n, uint *va)
{
  int i;

  if (argint(n, &i) < 0)
    return -1;
  if ((uint)i % PGSIZE || (uint)i < UMAPBASE || (uint)i >= UMAPTOP)
    return -1;
  *va = i;
  return 0;
}

// map(va): a zeroed, writable page at va, which must be free.
int
sys_map(void)
{
  struct proc *p = myproc();
  uint va;

  if (argmapva(0, &va) < 0 || p->nmapped == MAXMAPPED)
    return -1;
  if (uvmmap(p->pgdir, va) < 0)
    return -1;
  p->nmapped++;
  return 0;
}

// unmap(va): give back the page map() put at va.
int
sys_unmap(void)
{
  struct proc *p = myproc();
  uint va;

  if (argmapva(0, &va) < 0)
    return -1;
  if (uvmunmap(p->pgdir, va) < 0)
    return -1;
  p->nmapped--;
  return 0;
}
