# swtch(struct context **old, struct context *new): save the current registers on
# the stack, creating a struct context, and save its address in *old; switch to new
# and pop the registers it saved. The caller-saved registers are saved by the C
# calling convention (lib.h's struct context says which are left).

.text
.globl swtch
swtch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15

  movq %rsp, (%rdi)
  movq %rsi, %rsp

  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
