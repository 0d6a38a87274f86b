// The library every 64-bit PC guest links: guests/lib64 (the Multiboot and 64-bit
// entries, the trap entry, the 64-bit IDT, GDT and TSS, the context switch) and the
// portable part of guests/lib (the checks, the polled 16550 console and its printf,
// and the way out through isa-debug-exit), compiled for 64 bits.
#ifndef GUESTS_LIB_H
#define GUESTS_LIB_H

#include "types.h"
#include "mmu.h"

struct trapframe;

// entry.S calls the guest's main(magic, info) with what the Multiboot loader handed
// over (info is a physical address), on a boot stack of its own.

// trapasm.S builds a struct trapframe for every vector and calls the guest's trap();
// a new process may start at trapret, with a trap frame its kernel made up.
void trap(struct trapframe *tf);
void trapret(void);

// idt.c: an interrupt gate for the kernel only at every vector; double faults
// switch to the TSS's interrupt stack dfist (IST1-7).
extern struct gatedesc idt[];
void tvinit(int dfist);
void idtinit(void);

// gdt.c: 64-bit code and data segments for the kernel and ring 3, and the TSS ts.
extern uint64 gdt[];
void seginit(struct taskstate *ts);

// swtch.S: the registers swtch saves, those the SysV ABI makes callee-saved; rsp is
// the context's own address; rip is the return address swtch's ret pops.
struct context {
  uint64 r15;
  uint64 r14;
  uint64 r13;
  uint64 r12;
  uint64 rbx;
  uint64 rbp;
  uint64 rip;
};
void swtch(struct context **old, struct context *new);

// guests/lib/check.c: count a check and return whether it passed; "ok" or "FAIL";
// print how the checks went, as "GUEST: all N checks passed", and exit with 0 or 1.
int check(int passed);
const char *verdict(int passed);
void checkexit(const char *guest) __attribute__((noreturn));

// guests/lib/uart.c
void uartinit(void);
void uartputc(int c);

// guests/lib/printf.c: %d, %u, %x, %s, %c and %% only; no widths.
void consputc(int c);
void cprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// guests/lib/exit.c: QEMU exits with status (code << 1) | 1.
void debug_exit(int code) __attribute__((noreturn));

#endif
