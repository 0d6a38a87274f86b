// What minikern64 adds to minikern's defs.h: the parts of a 64-bit kernel that
// minikern has no counterpart for. Everything else, prototypes included, is
// minikern's (guests/minikern, on minikern64's include path after its own files).
#ifndef MINIKERN64_ARCH_H
#define MINIKERN64_ARCH_H

// The per-CPU block GS points at in the kernel (MSR_GS_BASE; swapgs brings it in on
// entry from ring 3). syscallasm.S reads it by offset, before it has a stack.
#define CPULOCAL_KSTACK 0
#define CPULOCAL_USTACK 8

// The local APIC's vectors, above the 8259 pair's, and the fixed virtual page it
// is mapped at (vm.c), in the top 2 MiB as Linux's fixmap: the physical page
// (0xFEE00000) lies beyond what KERNBASE + physical reaches in 2 GiB.
#define T_LAPICTIMER 0xF0
#define T_LAPICSPUR  0xFF
#define LAPICVA      0xFFFFFFFFFFE00000

#ifndef __ASSEMBLER__
#include "types.h"

struct cpulocal {
  uint64 kstack;  // top of the running process's kernel stack
  uint64 ustack;  // the user's stack pointer while syscallasm.S saves it
};
extern struct cpulocal cpulocal;

// lapic.c
void lapicinit(void);
int lapictimer(void);
void lapicintr(void);

// selftest.c
void selftests(void);

// syscallasm.S: where syscall lands (MSR_LSTAR).
void syscallentry(void);

// trap.c
void syscallinit(void);

#endif

#endif
