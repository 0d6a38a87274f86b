# The system call entry. syscall leaves the user's RIP in RCX and RFLAGS in R11,
# switches CS and SS (MSR_STAR) and masks RFLAGS (MSR_FMASK: IF among them), but
# keeps the user's RSP: the kernel stack comes from the per-CPU block, which swapgs
# makes GS's (Linux's entry_SYSCALL_64, on one CPU). The frame built here is a
# struct trapframe like an interrupt's, with vector T_SYSCALL, so trap() serves
# both; the way back is sysretq.

#include "mmu.h"
#include "traps.h"
#include "trapasm.h"
#include "arch.h"

.text
.globl syscallentry
syscallentry:
  swapgs
  movq %rsp, %gs:CPULOCAL_USTACK
  movq %gs:CPULOCAL_KSTACK, %rsp

  pushq $UDS                    # the frame an interrupt from ring 3 would push
  pushq %gs:CPULOCAL_USTACK
  pushq %r11
  pushq $UCS
  pushq %rcx
  pushq $0                      # error code
  pushq $T_SYSCALL
  PUSH_REGS

  sti                           # on the kernel stack now: interrupts may come
  movq %rsp, %rdi
  call trap
  cli                           # until sysretq has restored the user's RFLAGS

  POP_REGS
  addq $16, %rsp                # the vector number and error code
  movq 0(%rsp), %rcx            # RIP and RFLAGS for sysretq
  movq 16(%rsp), %r11
  movq 24(%rsp), %rsp           # the user's stack
  swapgs
  sysretq
