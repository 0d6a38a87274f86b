# Where taskswitch's tasks start. A task begins with the registers its TSS held:
# each stub keeps them with pushal and hands their address to the task's C code,
# which runs on the task's own stack and never returns.

#include "mmu.h"

.macro taskentry name
.globl \name\()_entry
\name\()_entry:
  pushal
  pushl %esp
  call \name
.endm

.text
taskentry jmptask
taskentry calltask
taskentry dftask
taskentry inttask
taskentry irqtask

# A data segment load past the GDT's limit: #GP with the selector as error code.
# The double-fault task resumes the main task at bad_ds_done.
.globl bad_ds_load, bad_ds_fault, bad_ds_done
bad_ds_load:
  movw $0x1234, %ax
bad_ds_fault:
  movw %ax, %ds
bad_ds_done:
  movw $(SEG_KDATA << 3), %ax
  movw %ax, %ds
  ret
