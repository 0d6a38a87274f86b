// minikern's limits, and the layout of its GDT.
#ifndef MINIKERN_PARAM_H
#define MINIKERN_PARAM_H

#define NPROC        8     // process table slots
#define KSTACKSIZE   4096  // each process's kernel stack
#define LOGSIZE      1024  // each process's console log (see sys_write)
#define MAXMAPPED    64    // pages one process may hold through map()
#define HZ           100   // timer interrupts per second

// GDT slots: the kernel's code and data (mmu.h's SEG_KCODE and SEG_KDATA), then
// ring-3 code and data, then the task state segment.
#define SEG_UCODE    3
#define SEG_UDATA    4
#define SEG_TSS      5
#define NGDT         6

#endif
