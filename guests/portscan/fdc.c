// The floppy disk controller with no drive attached, as a kernel detects it
// (Intel 82077AA datasheet, section 5; Linux's floppy.c): reset it through the
// digital output register, see IRQ 6, sense the interrupt once per drive, ask its
// version and dump its registers, and send it a command it does not know.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define SRB 0x3F1
#define DOR 0x3F2
#define MSR 0x3F4
#define FIFO 0x3F5
#define DIR 0x3F7
#define DOR_NRESET 0x04
#define DOR_DMA 0x08
#define DOR_MOTOR0 0x10
#define MSR_RQM 0x80
#define MSR_DIO 0x40
#define MSR_BUSY 0x10
#define FDC_IRQ 6
#define SENSE_INTERRUPT 0x08
#define VERSION 0x10
#define DUMPREG 0x0E
#define SPECIFY 0x03
#define CONFIGURE 0x13
#define LOCK 0x94
#define UNLOCK 0x14
#define UNKNOWN 0x1F
#define SPINS 100000

// Wait until the controller wants the direction DIO; 0 if it never does.
static int
ready(int dio)
{
  int i;

  for (i = 0; i < SPINS; i++)
    if ((inb(MSR) & (MSR_RQM | MSR_DIO)) == (MSR_RQM | dio))
      return 1;
  return 0;
}

// Send the bytes of a command, ending at a negative one (if any), then print its
// result phase.
static void
params(const char *name, int cmd, int p1, int p2, int p3)
{
  int bytes[4] = {cmd, p1, p2, p3}, n;

  cprintf("fdc %s:", name);
  for (n = 0; n < 4 && bytes[n] >= 0; n++) {
    if (!ready(0)) {
      cprintf(" not ready, msr %x\n", inb(MSR));
      return;
    }
    outb(FIFO, bytes[n]);
    if (n == 0)
      cprintf(" msr %x", inb(MSR));
  }
  for (n = 0; n < 16 && ready(MSR_DIO); n++)
    cprintf(" %x", inb(FIFO));
  cprintf(" (msr %x)\n", inb(MSR));
}

static void
command(const char *name, uchar cmd)
{
  params(name, cmd, -1, -1, -1);
}

// Reset the controller through the DOR; PEEK: read the MSR while it is held in
// reset, which on QEMU ends the reset without one.
static void
reset(int peek)
{
  outb(DOR, DOR_DMA);
  if (peek)
    cprintf("fdc in reset: msr %x\n", inb(MSR));
  outb(DOR, DOR_DMA | DOR_NRESET);
  cprintf("fdc reset: dor %x srb %x irq6 %d\n", inb(DOR), inb(SRB), irq_requested(FDC_IRQ));
}

void
fdc_probe(void)
{
  int i;

  cprintf("fdc: dor %x msr %x dir %x irq6 %d\n", inb(DOR), inb(MSR), inb(DIR),
          irq_requested(FDC_IRQ));
  reset(1);
  command("sense interrupt", SENSE_INTERRUPT);
  reset(0);
  for (i = 0; i < 5; i++)
    command("sense interrupt", SENSE_INTERRUPT);
  command("version", VERSION);
  params("specify", SPECIFY, 0xDF, 0x02, -1);
  params("configure", CONFIGURE, 0x00, 0x57, 0x05);
  command("lock", LOCK);
  command("dumpreg", DUMPREG);
  command("unlock", UNLOCK);
  command("unknown", UNKNOWN);
  outb(DOR, DOR_DMA | DOR_NRESET | DOR_MOTOR0 | 1);
  cprintf("fdc motor: dor %x srb %x msr %x dir %x\n", inb(DOR), inb(SRB), inb(MSR), inb(DIR));
  outb(DOR, DOR_DMA | DOR_NRESET);
}
