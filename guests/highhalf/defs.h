// Functions, counters and structures shared between highhalf's files.
#ifndef HIGHHALF_DEFS_H
#define HIGHHALF_DEFS_H

#include "types.h"

#define IRQ_KBD      1
#define IRQ_COM1     4
#define IRQ_IDE     14
#define IRQ_ERROR   19
#define IRQ_SPURIOUS 31

#define SECTSIZE 512

// A sector on its way to or from a disk, as xv6's buf.h has it.
struct buf {
  volatile int flags;
  uint dev;     // 0 or 1: the primary channel's master or slave
  uint sector;
  uchar data[SECTSIZE];
};
#define B_VALID 0x2  // data has been read from the disk
#define B_DIRTY 0x4  // data must be written to the disk

// mp.c: what the MP configuration table says.
extern uint lapicaddr;
extern uint ioapicaddr;
extern uchar ioapicid;
int mpinit(void);

// apic.c: xv6's lapicinit and ioapicinit, at the MP table's addresses.
void lapicinit(void);
void lapiceoi(void);
int ioapicinit(void);
void ioapicenable(int irq, int cpu);

// trap.c
extern volatile uint ticks;
extern volatile uint nirq[256];

// ide.c: interrupt-driven sector reads and writes on disk 1.
int ideinit(void);
void ideintr(void);
void iderw(struct buf *b);

// console.c and kbd.c: COM1 and the CGA screen; lines typed on the keyboard.
#define ESC 0x1B  // Escape ends a line too, unechoed
void consoleintr(int (*getc)(void));
int consoleread(char *dst, int n);
void consolefreeze(void);
int kbdgetc(void);
void kbdintr(void);

// uart input, main.c
void uartintr(void);

#endif
