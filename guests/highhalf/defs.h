// Functions and counters shared between highhalf's files.
#ifndef HIGHHALF_DEFS_H
#define HIGHHALF_DEFS_H

#include "types.h"

#define IRQ_COM1     4
#define IRQ_IDE     14
#define IRQ_ERROR   19
#define IRQ_SPURIOUS 31

// apic.c: xv6's lapicinit and ioapicinit, and what they count.
void lapicinit(void);
void lapiceoi(void);
void ioapicinit(void);
void ioapicenable(int irq, int cpu);

// trap.c
extern volatile uint ticks;
extern volatile uint nirq[256];

// ide.c: interrupt-driven sector reads from the primary master.
int ideinit(void);
void ideintr(void);
int ideread(uint sector, uint *buf);

// uart input, main.c
void uartintr(void);

#endif
