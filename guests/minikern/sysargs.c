// Where a system call's number, arguments and result are, on x86-32 (syscall.c
// dispatches it). A user program puts the call's number in EAX and its arguments
// on its stack, as for a C call, and raises int 0x80 (usys.S); the result comes
// back in EAX. Every argument is fetched through a check that ring 3
// could have read it itself: a bad pointer or number is the process's error (the
// call returns -1), never the kernel's.

#include "types.h"
#include "x86.h"
#include "defs.h"
#include "proc.h"

// Fetch the int at user address addr.
static int
fetchint(uint addr, int *ip)
{
  struct proc *p = myproc();

  if (!uvmaccessible(p->pgdir, addr, sizeof(int)))
    return -1;
  *ip = *(int *)addr;
  return 0;
}

// The nth argument. The stack holds the stub's return address, then the arguments.
int
argint(int n, int *ip)
{
  return fetchint(myproc()->tf->esp + 4 + 4 * n, ip);
}

// The nth argument, a pointer to a block of size bytes that ring 3 can read.
int
argptr(int n, char **pp, int size)
{
  int i;

  if (argint(n, &i) < 0)
    return -1;
  if (size < 0 || !uvmaccessible(myproc()->pgdir, i, size))
    return -1;
  *pp = (char *)i;
  return 0;
}

uint
sysnum(struct trapframe *tf)
{
  return tf->eax;
}

void
setsysret(struct trapframe *tf, int value)
{
  tf->eax = value;
}
