// The four IDE places of the PC (primary and secondary channel, master and slave):
// what an empty one answers, xv6's probe for disk 1, IDENTIFY DEVICE, and PIO reads
// and writes both polled (nIEN set) and interrupt-driven (IRQ 14 and 15).

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define SECTOR 512
#define ST_BSY 0x80
#define ST_DRQ 0x08
#define ST_ERR 0x01
#define CMD_READ 0x20
#define CMD_WRITE 0x30
#define CMD_IDENTIFY 0xEC
#define CTL_NIEN 0x02

struct channel {
  ushort base, control;
  int irq;
};

static const struct channel channels[2] = {{0x1F0, 0x3F6, 14}, {0x170, 0x376, 15}};
static ushort buf[SECTOR / 2];

static uint
waitready(const struct channel *ch)
{
  uint status, spins;

  for (spins = 0; spins < 1000000; spins++) {
    status = inb(ch->base + 7);
    if (!(status & ST_BSY))
      return status;
  }
  return status;
}

static void
issue(const struct channel *ch, int drive, uint lba, uint count, uint command)
{
  outb(ch->base + 6, 0xE0 | drive << 4 | (lba >> 24 & 0x0F));
  outb(ch->base + 2, count);
  outb(ch->base + 3, lba);
  outb(ch->base + 4, lba >> 8);
  outb(ch->base + 5, lba >> 16);
  outb(ch->base + 7, command);
}

// xv6's ide.c: select the drive, then see whether its status ever reads non-zero.
static int
xv6_present(const struct channel *ch, int drive)
{
  int i;

  outb(ch->base + 6, 0xE0 | drive << 4);
  for (i = 0; i < 1000; i++)
    if (inb(ch->base + 7) != 0)
      return 1;
  return 0;
}

// Device 1's task file is shown: the host's writes for device 0's commands reached
// it too, and device 0's progress did not. Device 0's registers, and device 1's
// Error, show what the firmware's probing left, which is not pvtool's to replay.
static void
registers(const struct channel *ch, int drive)
{
  uint r[8], i, alt;

  outb(ch->base + 6, 0xA0 | drive << 4);
  for (i = 1; i < 8; i++)
    r[i] = inb(ch->base + i);
  alt = inb(ch->control);
  if (drive)
    cprintf("ide %x.%d: count %x lba %x %x %x ", ch->base, drive, r[2], r[3], r[4], r[5]);
  else
    cprintf("ide %x.%d: ", ch->base, drive);
  cprintf("device %x status %x alt %x xv6 %d\n", r[6], r[7], alt, xv6_present(ch, drive));
}

// IDENTIFY's strings: two characters a word, the first in the high byte.
static void
text(int first, int end)
{
  int i;

  for (i = first; i < end; i++)
    cprintf("%c%c", buf[i] >> 8, buf[i] & 0xFF);
}

static int
identify(const struct channel *ch, int drive)
{
  uint status;

  outb(ch->control, CTL_NIEN);
  issue(ch, drive, 0, 0, CMD_IDENTIFY);
  status = waitready(ch);
  if (status & ST_ERR) {  // a packet device aborts it, leaving its signature
    cprintf("ide %x.%d identify: status %x error %x count %x lba %x %x %x\n", ch->base,
            drive, status, inb(ch->base + 1), inb(ch->base + 2), inb(ch->base + 3),
            inb(ch->base + 4), inb(ch->base + 5));
    return 0;
  }
  if (!(status & ST_DRQ)) {
    cprintf("ide %x.%d identify: status %x error %x\n", ch->base, drive, status,
            inb(ch->base + 1));
    return 0;
  }
  insl(ch->base, buf, SECTOR / 4);
  cprintf("ide %x.%d identify: %x chs %d/%d/%d current %d/%d/%d %d lba %x %x status %x\n",
          ch->base, drive, buf[0], buf[1], buf[3], buf[6], buf[54], buf[55], buf[56],
          buf[57] | buf[58] << 16, buf[60], buf[61], inb(ch->base + 7));
  cprintf("ide %x.%d model [", ch->base, drive);
  text(27, 47);
  cprintf("] serial [");
  text(10, 20);
  cprintf("] firmware [");
  text(23, 27);
  cprintf("]\n");
  return 1;
}

static void
show_sector(const struct channel *ch, int drive, const char *how, uint status)
{
  char text[17];
  int i;

  for (i = 0; i < 16; i++) {
    char c = ((char *)buf)[i];
    text[i] = c >= ' ' && c < 127 ? c : '.';
  }
  text[16] = 0;
  cprintf("ide %x.%d %s: status %x [%s]\n", ch->base, drive, how, status, text);
}

static void
read_polled(const struct channel *ch, int drive, uint lba)
{
  uint status;

  outb(ch->control, CTL_NIEN);
  issue(ch, drive, lba, 1, CMD_READ);
  status = waitready(ch);
  if (status & ST_DRQ)
    insl(ch->base, buf, SECTOR / 4);
  show_sector(ch, drive, "polled read", status);
}

// Two sectors with interrupts: one IRQ per sector, the status read in between.
static void
read_interrupts(const struct channel *ch, int drive, uint lba)
{
  uint status, before;

  nirq[ch->irq] = 0;
  irqunmask(ch->irq);
  outb(ch->control, 0);
  issue(ch, drive, lba, 2, CMD_READ);
  waitirq(ch->irq, 1);
  status = inb(ch->base + 7);
  if (status & ST_DRQ)
    insl(ch->base, buf, SECTOR / 4);
  show_sector(ch, drive, "irq read 1", status);
  waitirq(ch->irq, 2);
  status = inb(ch->base + 7);
  if (status & ST_DRQ)
    insl(ch->base, buf, SECTOR / 4);
  show_sector(ch, drive, "irq read 2", status);
  before = nirq[ch->irq];
  hpet_delay(20000);
  irqmask(ch->irq);
  cprintf("ide %x.%d irqs %d then %d, status %x\n", ch->base, drive, before,
          nirq[ch->irq], inb(ch->base + 7));
}

static void
write_interrupts(const struct channel *ch, int drive, uint lba)
{
  uint i, status;

  for (i = 0; i < SECTOR / 2; i++)
    buf[i] = 0x4100 + i;
  nirq[ch->irq] = 0;
  irqunmask(ch->irq);
  outb(ch->control, 0);
  issue(ch, drive, lba, 1, CMD_WRITE);
  status = waitready(ch);
  outsl(ch->base, buf, SECTOR / 4);
  waitirq(ch->irq, 1);
  cprintf("ide %x.%d irq write: drq status %x irqs %d status %x\n", ch->base, drive,
          status, nirq[ch->irq], inb(ch->base + 7));
  irqmask(ch->irq);
  read_polled(ch, drive, lba);
}

static void
absent_command(const struct channel *ch, int drive)
{
  nirq[ch->irq] = 0;
  irqunmask(ch->irq);
  outb(ch->control, 0);
  issue(ch, drive, 0, 1, CMD_READ);
  hpet_delay(20000);
  sti();
  hpet_delay(20000);
  cli();
  irqmask(ch->irq);
  cprintf("ide %x.%d command: irqs %d status %x\n", ch->base, drive, nirq[ch->irq],
          inb(ch->base + 7));
}

void
ide_probe(void)
{
  int c, d;

  for (c = 0; c < 2; c++)
    for (d = 0; d < 2; d++) {
      const struct channel *ch = &channels[c];
      registers(ch, d);
      if (!identify(ch, d)) {
        absent_command(ch, d);
        continue;
      }
      read_polled(ch, d, 1);
      read_interrupts(ch, d, 2);
      write_interrupts(ch, d, 3);
    }
}

void
reset_probe(const char *cmdline)
{
  const char *p;

  for (p = cmdline; *p; p++) {
    if (p[0] == 'r' && p[1] == 'e' && p[2] == 's' && p[3] == 'e' && p[4] == 't' && p[5] == '=')
      break;
  }
  if (!*p)
    return;
  p += 6;
  cprintf("pcprobe: reset through %s\n", p);
  if (p[0] == '9')
    outb(0x92, inb(0x92) | 1);
  else if (p[0] == 'c')
    outb(0xCF9, 0x06);
  else if (p[0] == 'k')
    outb(0x64, 0xFE);
  for (;;)
    ;
}
