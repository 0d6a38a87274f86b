# The system-call entry and the ring-3 loop that calls it.
#
# syscall leaves the user's RIP in RCX and RFLAGS in R11, switches CS and SS
# (MSR_STAR) and masks RFLAGS (MSR_FMASK), but keeps the user's RSP: the kernel
# stack comes from the per-CPU block, which swapgs makes GS's, as in Linux's
# entry_SYSCALL_64. sysc(number) does the work; sysretq goes back.

#include "nanobench.h"
#include "percpu.h"

.text
.globl syscallentry
syscallentry:
  swapgs
  movq %rsp, %gs:CPULOCAL_USTACK
  movq %gs:CPULOCAL_KSTACK, %rsp
  pushq %rcx
  pushq %r11
  movq %rax, %rdi
  call sysc
  popq %r11
  popq %rcx
  movq %gs:CPULOCAL_USTACK, %rsp
  swapgs
  sysretq

# Ring 3: as many null system calls as EBX says (main.c's enteruser passes
# count[OP_SYSCALL]: the kernel's data is out of ring 3's reach), then the one that
# ends the benchmark. The loop is position-independent: main.c runs it at a user
# address in the lower half (where a 64-bit Xen's user page tables reach), not at its
# link address.
.p2align 6
.globl userloop
userloop:
  testl %ebx, %ebx
  jz 3f
1:
  movl $SYS_NULL, %eax
  syscall
  decl %ebx
  jnz 1b
3:
  movl $SYS_DONE, %eax
  syscall
2:
  jmp 2b
