// The system calls between xenhello64's ring-3 program (user.S) and its kernel
// (main.c's user_syscall), and where the program lives in the user address space.
#ifndef XENHELLO64_USER_H
#define XENHELLO64_USER_H

#define USER_SYS_write  1  // (buf, len): print len bytes
#define USER_SYS_gsword 2  // (word): the word at GS:0, as ring 3 reads it
#define USER_SYS_exit   3  // (status): back to the kernel for good

#define USER_EXIT_STATUS 7

// One L4, L3, L2 and L1 map two pages: the program's code and its stack, whose
// lowest word is also where the user GS base points.
#define USER_CODE_VA   0x400000
#define USER_STACK_VA  0x5FF000  // the last page of the same L1

#endif
