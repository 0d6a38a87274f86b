# Context switch:
#
#   void swtch(struct context **old, struct context *new);
#
# Save the callee-saved registers on the current stack, store that stack pointer in
# *old, switch to the stack new, and pop its callee-saved registers. The ret then
# goes wherever new was saved (or, for a context never run, to the eip its creator
# put in it).

.globl swtch
swtch:
  movl 4(%esp), %eax
  movl 8(%esp), %edx

  pushl %ebp
  pushl %ebx
  pushl %esi
  pushl %edi

  movl %esp, (%eax)
  movl %edx, %esp

  popl %edi
  popl %esi
  popl %ebx
  popl %ebp
  ret
