// ATA disk driver for the primary channel's master drive, in PIO mode and polled:
// the driver waits on the status register and the drive never interrupts (nIEN).
// Register and command definitions from the ATA/ATAPI-6 standard (T13/1410D).

#include "types.h"
#include "x86.h"
#include "defs.h"

// Command block registers (primary channel), and the control block register.
#define IDE_DATA     0x1F0
#define IDE_ERROR    0x1F1
#define IDE_COUNT    0x1F2
#define IDE_LBA0     0x1F3
#define IDE_LBA1     0x1F4
#define IDE_LBA2     0x1F5
#define IDE_DEVICE   0x1F6  // drive select and LBA bits 24-27
#define IDE_STATUS   0x1F7  // read
#define IDE_COMMAND  0x1F7  // write
#define IDE_CTRL     0x3F6  // write: device control; read: alternate status

#define IDE_BSY      0x80   // status: busy
#define IDE_DRDY     0x40   // status: drive ready
#define IDE_DF       0x20   // status: drive fault
#define IDE_DRQ      0x08   // status: data request
#define IDE_ERR      0x01   // status: error

#define CTRL_NIEN    0x02   // device control: no interrupts

#define DEV_LBA      0xE0   // device: LBA addressing, master

#define CMD_READ     0x20   // READ SECTORS
#define CMD_WRITE    0x30   // WRITE SECTORS
#define CMD_FLUSH    0xE7   // CACHE FLUSH
#define CMD_IDENTIFY 0xEC   // IDENTIFY DEVICE

// How many times to poll the status before giving up on the drive.
#define PATIENCE 1000000

// Wait until the drive is not busy and, if want is DRQ, has data to move.
// Returns the status, or -1 on an error, a fault or a drive that never answers.
static int
idewait(int want)
{
  int i, r;

  for (i = 0; i < PATIENCE; i++) {
    r = inb(IDE_STATUS);
    if (r & IDE_BSY)
      continue;
    if (r & (IDE_DF | IDE_ERR))
      return -1;
    if ((r & (IDE_DRDY | want)) == (IDE_DRDY | want))
      return r;
  }
  return -1;
}

// A register write takes effect within 400 ns; four reads of the alternate
// status, each at least 100 ns, wait that long without changing any state.
static void
idedelay(void)
{
  int i;

  for (i = 0; i < 4; i++)
    inb(IDE_CTRL);
}

// Is there an ATA disk? Turn its interrupts off and ask it to identify itself.
int
ideinit(void)
{
  uint id[SECTSIZE / 4];
  uchar status;

  outb(IDE_CTRL, CTRL_NIEN);
  outb(IDE_DEVICE, DEV_LBA);
  idedelay();

  // A channel with no drive reads as 0 (nothing attached) or 0xFF (floating bus).
  status = inb(IDE_STATUS);
  if (status == 0 || status == 0xFF || idewait(0) < 0)
    return 0;

  outb(IDE_COUNT, 0);
  outb(IDE_LBA0, 0);
  outb(IDE_LBA1, 0);
  outb(IDE_LBA2, 0);
  outb(IDE_COMMAND, CMD_IDENTIFY);
  idedelay();
  if (inb(IDE_STATUS) == 0)
    return 0;
  // A packet (ATAPI) device aborts IDENTIFY DEVICE and sets its signature.
  if (idewait(IDE_DRQ) < 0 || inb(IDE_LBA1) != 0 || inb(IDE_LBA2) != 0)
    return 0;
  insl(IDE_DATA, id, SECTSIZE / 4);
  return 1;
}

// Select sector lba for a one-sector command.
static void
idesector(uint lba)
{
  outb(IDE_COUNT, 1);
  outb(IDE_LBA0, lba & 0xFF);
  outb(IDE_LBA1, (lba >> 8) & 0xFF);
  outb(IDE_LBA2, (lba >> 16) & 0xFF);
  outb(IDE_DEVICE, DEV_LBA | ((lba >> 24) & 0x0F));
}

// Each command runs from start to finish with interrupts off, so nothing else
// touches the channel in between.
static int
readsector(uint lba, void *buf)
{
  uint flags = irqsave();
  int r = -1;

  if (idewait(0) >= 0) {
    idesector(lba);
    outb(IDE_COMMAND, CMD_READ);
    if (idewait(IDE_DRQ) >= 0) {
      insl(IDE_DATA, buf, SECTSIZE / 4);
      r = 0;
    }
  }
  irqrestore(flags);
  return r;
}

static int
writesector(uint lba, const void *buf)
{
  uint flags = irqsave();
  int r = -1;

  if (idewait(0) >= 0) {
    idesector(lba);
    outb(IDE_COMMAND, CMD_WRITE);
    if (idewait(IDE_DRQ) >= 0) {
      outsl(IDE_DATA, buf, SECTSIZE / 4);
      r = idewait(0) < 0 ? -1 : 0;
    }
  }
  irqrestore(flags);
  return r;
}

// n sectors from lba on, one command per sector (the drive's own transfer size is
// never asked for).
int
ideread(uint lba, void *buf, uint n)
{
  for (; n > 0; n--, lba++, buf = (char *)buf + SECTSIZE)
    if (readsector(lba, buf) < 0)
      return -1;
  return 0;
}

int
idewrite(uint lba, const void *buf, uint n)
{
  for (; n > 0; n--, lba++, buf = (const char *)buf + SECTSIZE)
    if (writesector(lba, buf) < 0)
      return -1;
  return 0;
}

// Make what was written durable: the drive may hold it in a volatile cache.
int
ideflush(void)
{
  uint flags = irqsave();
  int r = -1;

  if (idewait(0) >= 0) {
    outb(IDE_COMMAND, CMD_FLUSH);
    r = idewait(0) < 0 ? -1 : 0;
  }
  irqrestore(flags);
  return r;
}
