// The library every PC guest links (guests/lib): the Multiboot entry, the trap
// entry and the descriptor tables, the context switch, the counting of checks, a
// polled 16550 console, a printf for it, and the way out through QEMU's
// isa-debug-exit device.
#ifndef GUESTS_LIB_H
#define GUESTS_LIB_H

#include "types.h"
#include "mmu.h"

struct trapframe;

// entry.S calls the guest's main(magic, info) with what the Multiboot loader handed
// over, on a boot stack of its own.

// trapasm.S builds a struct trapframe for every vector and calls the guest's trap()
// (trapdefault.c's, which reports the trap and exits, if the guest has none); a new
// process may start at trapret, with a trap frame its kernel made up.
void trap(struct trapframe *tf);
void trapret(void);

// idt.c: every gate for the kernel only, but usergate (a trap gate if istrap).
extern struct gatedesc idt[];
void tvinit(int usergate, int istrap);
void idtinit(void);

// gdt.c: flat segments for the kernel, and for ring 3 with the TSS ts unless ts is 0.
extern struct segdesc gdt[];
void seginit(struct taskstate *ts);

// swtch.S: the registers swtch saves. The caller-saved ones (eax, ecx, edx) are saved
// by the C calling convention; esp is the context's own address; eip is the return
// address swtch's ret pops.
struct context {
  uint edi;
  uint esi;
  uint ebx;
  uint ebp;
  uint eip;
};
void swtch(struct context **old, struct context *new);

// check.c, uart.c, printf.c, exit.c: how a guest reports (report.h).
#include "report.h"

#endif
