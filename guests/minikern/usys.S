# System call stubs for user programs: the call's number in EAX, the arguments
# where the C caller left them, on the stack (syscall.c fetches them), int 0x80.

#include "syscall.h"
#include "traps.h"

#define SYSCALL(name)             \
  .globl name;                    \
  name:                           \
    movl $SYS_ ## name, %eax;     \
    int $T_SYSCALL;               \
    ret

SYSCALL(exit)
SYSCALL(write)
SYSCALL(getpid)
SYSCALL(yield)
SYSCALL(sleep)
SYSCALL(uptime)
SYSCALL(map)
SYSCALL(unmap)
