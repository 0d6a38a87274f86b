// What nanobench64's C and assembly agree on: the system-call numbers, how many
// times each operation runs, and the per-CPU block's offsets.
#ifndef NANOBENCH64_H
#define NANOBENCH64_H

#define N          256  // operations per measurement
#define SYS_NULL   0
#define SYS_DONE   1

// The per-CPU block GS points at in the kernel (MSR_GS_BASE; swapgs brings it in on
// a system call): syscall.S reads it by offset, before it has a stack.
#define CPULOCAL_KSTACK 0
#define CPULOCAL_USTACK 8

#endif
