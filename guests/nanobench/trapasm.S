# nanobench's trap entry: one stub per IDT vector, alltraps (a struct trapframe,
# x86.h, for trap() in main.c), and swtch, xv6's context switch.
.altmacro

.macro vector n
.globl vector\n
vector\n:
  .if (\n == 8) || ((\n >= 10) && (\n <= 14)) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
  .else
  pushl $0
  .endif
  pushl $\n
  jmp alltraps
.endm

.macro vectorentry n
  .long vector\n
.endm

.text
.set i, 0
.rept 256
  vector %i
  .set i, i + 1
.endr

.data
.p2align 2
.globl vectors
vectors:
.set i, 0
.rept 256
  vectorentry %i
  .set i, i + 1
.endr

.noaltmacro

.text
.globl alltraps
alltraps:
  pushl %ds
  pushl %es
  pushl %fs
  pushl %gs
  pushal
  cld
  movw $(2 << 3), %ax           # a trap from ring 3 arrives with the user's segments
  movw %ax, %ds
  movw %ax, %es
  pushl %esp                    # trap(tf)
  call trap
  addl $4, %esp
.globl trapret
trapret:
  popal
  popl %gs
  popl %fs
  popl %es
  popl %ds
  addl $8, %esp                 # trapno and error code
  iret

# swtch(old, new): save the callee-saved registers on this stack, store the stack
# pointer in *old, and continue on the stack new, as xv6's swtch.S.
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
