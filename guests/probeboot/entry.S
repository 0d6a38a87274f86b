# probeboot's entry: record every register the Multiboot loader left, before the first
# instruction that could change one, then go on as every PC guest does (the library's
# _start: its own stack, main(magic, info)). ESP is saved before anything is pushed:
# the loader's ESP is part of what we measure.

#include "probe.h"

.text
.globl probe_entry
probe_entry:
  movl %eax, entry + E_EAX
  movl %ebx, entry + E_EBX
  movl %ecx, entry + E_ECX
  movl %edx, entry + E_EDX
  movl %esi, entry + E_ESI
  movl %edi, entry + E_EDI
  movl %ebp, entry + E_EBP
  movl %esp, entry + E_ESP
  movl $(flagslot + 4), %esp        # mov leaves EFLAGS alone
  pushfl
  popl entry + E_EFLAGS
  movw %cs, entry + E_CS
  movw %ds, entry + E_DS
  movw %es, entry + E_ES
  movw %fs, entry + E_FS
  movw %gs, entry + E_GS
  movw %ss, entry + E_SS
  movl %cr0, %eax
  movl %eax, entry + E_CR0
  movl %cr2, %eax
  movl %eax, entry + E_CR2
  movl %cr3, %eax
  movl %eax, entry + E_CR3
  movl %cr4, %eax
  movl %eax, entry + E_CR4
  sgdt entry + E_GDTR
  sidt entry + E_IDTR
  sldt entry + E_LDTR
  str entry + E_TR
  movl entry + E_EAX, %eax
  jmp _start

.bss
.p2align 2
flagslot:                           # the one word pushfl needs
  .space 4
