// The ring-3 program. The kernel maps this page alone at USER_CODE_VA in the user
// address space, so the code refers to nothing outside it but by RIP-relative
// addresses within it, and to its GS base, which the kernel set. Its system calls
// (user.h) go by `syscall`: the number in RAX, arguments in RDI and RSI.

#include "user.h"

  .section .utext, "ax"
  .globl user_program
user_program:
  movl $USER_SYS_write, %eax
  leaq greeting(%rip), %rdi
  movl $(greeting_end - greeting), %esi
  syscall

  movl $USER_SYS_gsword, %eax   // what GS:0 holds, for the kernel to check
  movq %gs:0, %rdi
  syscall

  movl $USER_SYS_exit, %eax
  movl $USER_EXIT_STATUS, %edi
  syscall
1:
  jmp 1b

greeting:
  .ascii "hello from ring 3 through syscall\n"
greeting_end:
