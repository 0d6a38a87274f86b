# The trap entry of every 64-bit PC guest: one stub per vector pushes an error code
# (0 where the CPU pushes none) and the vector number, then alltraps saves the
# registers and calls trap(tf). A trap from ring 3 arrives with the user's GS base:
# swapgs exchanges it with the kernel's (MSR_KERNEL_GS_BASE) on the way in and back
# on the way out, as Linux's entry code does.

#include "trapasm.h"

# Vectors for which the CPU pushes an error code (Intel SDM vol. 3A, table 6-1).
.altmacro
.macro TRAPSTUB n
  .p2align 4
stub\n:
  .if (\n == 8) || (\n >= 10 && \n <= 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
  .else
    pushq $0
  .endif
  pushq $\n
  jmp alltraps
.endm

.text
.globl alltraps
alltraps:
  testb $3, TF_CS(%rsp)
  jz 1f
  swapgs
1:
  PUSH_REGS
  movq %rsp, %rdi
  call trap

# Return to the trapped code, or, for a new process, enter it.
.globl trapret
trapret:
  POP_REGS
  addq $16, %rsp                # the vector number and error code
  testb $3, 8(%rsp)             # the CS the CPU pushed
  jz 1f
  swapgs
1:
  iretq

n = 0
.rept 256
  TRAPSTUB %n
  n = n + 1
.endr

# The address of each stub, for idt.c.
.section .rodata
.p2align 3
.globl vectors
vectors:
.macro STUBADDR n
  .quad stub\n
.endm
n = 0
.rept 256
  STUBADDR %n
  n = n + 1
.endr
