// Interrupt-driven ATA reads from the primary channel's master, as xv6's ide.c: issue
// READ SECTORS, sleep until IRQ 14 (through the I/O APIC) says the sector is there,
// take it in the interrupt handler. ATA/ATAPI-6 (T13/1410D) registers.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define IDE_DATA    0x1F0
#define IDE_COUNT   0x1F2
#define IDE_LBA0    0x1F3
#define IDE_LBA1    0x1F4
#define IDE_LBA2    0x1F5
#define IDE_DEVICE  0x1F6
#define IDE_STATUS  0x1F7
#define IDE_COMMAND 0x1F7
#define IDE_CTRL    0x3F6

#define IDE_BSY  0x80
#define IDE_DRDY 0x40
#define IDE_DRQ  0x08
#define IDE_ERR  0x01
#define DEV_LBA  0xE0
#define CMD_READ 0x20
#define SECTSIZE 512
#define PATIENCE 1000000

static uint *volatile dst;  // where the sector being read goes
static volatile int done;

static int
idewait(void)
{
  int i, r;

  for (i = 0; i < PATIENCE; i++) {
    r = inb(IDE_STATUS);
    if ((r & (IDE_BSY | IDE_DRDY)) == IDE_DRDY)
      return r;
  }
  return -1;
}

// Is there a disk? Then let it interrupt (nIEN clear).
int
ideinit(void)
{
  outb(IDE_DEVICE, DEV_LBA);
  if (idewait() < 0 || inb(IDE_STATUS) == 0xFF)
    return 0;
  outb(IDE_CTRL, 0);
  return 1;
}

int
ideread(uint sector, uint *buf)
{
  if (idewait() < 0)
    return 0;
  dst = buf;
  done = 0;
  outb(IDE_COUNT, 1);
  outb(IDE_LBA0, sector & 0xFF);
  outb(IDE_LBA1, (sector >> 8) & 0xFF);
  outb(IDE_LBA2, (sector >> 16) & 0xFF);
  outb(IDE_DEVICE, DEV_LBA | ((sector >> 24) & 0x0F));
  outb(IDE_COMMAND, CMD_READ);
  while (!done)
    hlt();  // interrupts are on: IRQ 14 or the next tick wakes us
  return done > 0;
}

void
ideintr(void)
{
  int r = inb(IDE_STATUS);  // also acknowledges the drive's interrupt

  if (dst != 0 && (r & (IDE_BSY | IDE_DRQ | IDE_ERR)) == IDE_DRQ) {
    insl(IDE_DATA, dst, SECTSIZE / 4);
    done = 1;
  } else {
    done = -1;
  }
  dst = 0;
}
