// The disk, as xv6's ide.c drives it: the primary channel, disk 1 (the slave, where
// xv6 keeps its file system), one sector a request, the request started by iderw
// and finished by IRQ 14 through the I/O APIC: a read's sector is taken in the
// interrupt handler, a write's is in the drive before the interrupt comes. Registers
// from ATA/ATAPI-6 (T13/1410D).

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

#define IDE_BSY   0x80
#define IDE_DRDY  0x40
#define IDE_DF    0x20
#define IDE_ERR   0x01
#define DEV_LBA   0xE0
#define DEV_SLAVE 0x10
#define CMD_READ  0x20
#define CMD_WRITE 0x30
#define PROBES    1000  // status reads before deciding disk 1 is not there

static struct buf *volatile pending;  // the request the drive is working on
static int havedisk1;

// Wait until the drive is ready; with CHECKERR, whether it failed.
static int
idewait(int checkerr)
{
  int r;

  while (((r = inb(IDE_STATUS)) & (IDE_BSY | IDE_DRDY)) != IDE_DRDY)
    ;
  if (checkerr && (r & (IDE_DF | IDE_ERR)) != 0)
    return -1;
  return 0;
}

// Is there a disk 1? A channel answers a status of 0 for a drive it does not have.
// xv6 first waits for whichever device the firmware left selected: on QEMU that is
// device 1, whose status reads 0 for ever if there is no disk 1, so select device 0.
int
ideinit(void)
{
  int i;

  cprintf("ide: the firmware left the device register at 0x%x\n", inb(IDE_DEVICE));
  ioapicenable(IRQ_IDE, 0);
  outb(IDE_DEVICE, DEV_LBA);
  idewait(0);
  outb(IDE_DEVICE, DEV_LBA | DEV_SLAVE);
  for (i = 0; i < PROBES; i++)
    if (inb(IDE_STATUS) != 0) {
      havedisk1 = 1;
      break;
    }
  outb(IDE_DEVICE, DEV_LBA);  // back to disk 0
  return havedisk1;
}

static void
idestart(struct buf *b)
{
  idewait(0);
  outb(IDE_CTRL, 0);  // nIEN clear: interrupt when done
  outb(IDE_COUNT, 1);
  outb(IDE_LBA0, b->sector & 0xFF);
  outb(IDE_LBA1, (b->sector >> 8) & 0xFF);
  outb(IDE_LBA2, (b->sector >> 16) & 0xFF);
  outb(IDE_DEVICE, DEV_LBA | (b->dev & 1) << 4 | ((b->sector >> 24) & 0x0F));
  if (b->flags & B_DIRTY) {
    outb(IDE_COMMAND, CMD_WRITE);
    outsl(IDE_DATA, b->data, SECTSIZE / 4);
  } else {
    outb(IDE_COMMAND, CMD_READ);
  }
}

// IRQ 14: the request is done; a read's data waits in the drive.
void
ideintr(void)
{
  struct buf *b = pending;

  if (b == 0) {
    inb(IDE_STATUS);  // acknowledge an interrupt nobody asked for
    return;
  }
  if (!(b->flags & B_DIRTY) && idewait(1) >= 0)
    insl(IDE_DATA, b->data, SECTSIZE / 4);
  b->flags = (b->flags | B_VALID) & ~B_DIRTY;
  pending = 0;
}

// Write B to the disk if it is dirty, else read it; wait (halted, interrupts on)
// until IRQ 14 says it is done.
void
iderw(struct buf *b)
{
  pending = b;
  idestart(b);
  cli();
  while ((b->flags & (B_VALID | B_DIRTY)) != B_VALID)
    safe_halt();
  sti();
}
