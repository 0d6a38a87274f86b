// The per-CPU block GS points at in nanobench64's kernel (MSR_GS_BASE; swapgs brings
// it in on a system call): syscall.S reads it by offset, before it has a stack.
#ifndef NANOBENCH64_PERCPU_H
#define NANOBENCH64_PERCPU_H

#define CPULOCAL_KSTACK 0
#define CPULOCAL_USTACK 8

#endif
