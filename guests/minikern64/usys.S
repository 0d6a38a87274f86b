# System call stubs for user programs: the call's number in RAX, the arguments
# where the C caller left them (RDI, RSI, RDX: no call here takes a fourth, which
# would move from RCX to R10), then syscall, which clobbers RCX and R11, both
# caller-saved.

#include "syscall.h"

#define SYSCALL(name)             \
  .globl name;                    \
  name:                           \
    movl $SYS_ ## name, %eax;     \
    syscall;                      \
    ret

SYSCALL(exit)
SYSCALL(write)
SYSCALL(getpid)
SYSCALL(yield)
SYSCALL(sleep)
SYSCALL(uptime)
SYSCALL(map)
SYSCALL(unmap)
