# Trap entry: one stub per IDT vector, and alltraps, which builds a struct trapframe
# (x86.h), calls the guest's trap(), and returns through trapret.

#include "mmu.h"

# xv6 generates its 256 stubs with a Perl script (vectors.pl); gas macros do it here.
# The CPU pushes an error code only for the vectors listed below (SDM vol. 3A, 6.13);
# the other stubs push a 0 so that every trap frame has the same shape.
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

# .Ln counts the vectors; an .L name stays out of the symbol table.
.text
.set .Ln, 0
.rept 256
  vector %(.Ln)
  .set .Ln, .Ln + 1
.endr

# vectors[n] is the address of stub n; tvinit() points the IDT gates at them.
.data
.p2align 2
.globl vectors
vectors:
.set .Ln, 0
.rept 256
  vectorentry %(.Ln)
  .set .Ln, .Ln + 1
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
  cld                           # the interrupted code may have left DF set

  # A trap from ring 3 arrives with the user's data segments loaded.
  movw $(SEG_KDATA << 3), %ax
  movw %ax, %ds
  movw %ax, %es

  pushl %esp                    # trap(tf)
  call trap
  addl $4, %esp

# A new process starts here too (minikern's allocproc), with a trap frame made up by
# the kernel.
.globl trapret
trapret:
  popal
  popl %gs
  popl %fs
  popl %es
  popl %ds
  addl $8, %esp                 # trapno and error code
  iret
