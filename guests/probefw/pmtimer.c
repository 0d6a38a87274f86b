// The ACPI PM timer (ACPI 6.5, 4.8.3.3): a 24-bit counter at 3.579545 MHz in the
// FADT's PM_TMR_BLK. Kernels calibrate their delay loops against it, so it must run
// at three times the PIT's 1.193182 MHz: both are read in windows of 2 ms.
#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define PIT_CH0 0x40
#define PIT_CONTROL 0x43
#define PIT_MODE2_WORD 0x34     // channel 0, lsb then msb, mode 2, binary
#define PIT_LATCH0 0x00
#define PIT_TICKS 2386          // 2 ms of 1.193182 MHz
#define WINDOWS 1000
#define PM_TIMER_MASK 0xFFFFFF
#define TMR_STS 0x0001
#define SCI_EN 0x0001
#define SLP_TYP_S3 (1 << 10)  // a sleep type without SLP_EN: no sleep

static uint
pit_count(void)
{
  outb(PIT_CONTROL, PIT_LATCH0);
  uint low = inb(PIT_CH0);
  return low | inb(PIT_CH0) << 8;
}

// PM1 (4.8.3.1): the timer's status bit clears when 1 is written to it; the OS
// enables ACPI by writing the FADT's ACPI_ENABLE to SMI_CMD, and SCI_EN shows it;
// which of PM1 control's bits the OS may write itself.
static void
pm1(const uchar *fadt)
{
  uint status = rd32(fadt + 56), control = rd32(fadt + 64), smi_cmd = rd32(fadt + 48);

  cprintf("pm1 status at %x: %x", status, inw(status));
  outw(status, TMR_STS);
  cprintf(", after clearing %x\n", inw(status) & TMR_STS);
  cprintf("pm1 control at %x: %x", control, inw(control));
  outb(smi_cmd, fadt[52]);
  cprintf(", after acpi enable %x", inw(control));
  outb(smi_cmd, fadt[53]);
  cprintf(", after acpi disable %x", inw(control));
  outw(control, SCI_EN | SLP_TYP_S3);
  cprintf(", after writing %x: %x\n", SCI_EN | SLP_TYP_S3, inw(control));
  outw(control, 0);
}

// Whether the PM timer counts three times as many ticks as the PIT, within 1%,
// while at least N ticks of the PIT pass (N under the PIT's 65536-tick period).
static int
window_ok(uint port, uint n)
{
  uint elapsed = 0, last = pit_count(), start = inl(port);

  while (elapsed < n) {
    uint now = pit_count();
    elapsed += (last - now) & 0xFFFF;
    last = now;
  }
  uint pm = (inl(port) - start) & PM_TIMER_MASK, expected = 3 * elapsed;
  return pm > expected - expected / 100 && pm < expected + expected / 100;
}

// On a busy host QEMU's CPU thread waits tens of milliseconds between turns, and
// the PIT can wrap unseen: that only ever makes a window show too many PM ticks. So
// one window showing the rate, of up to WINDOWS, is the check.
void
probe_pmtimer(const uchar *fadt)
{
  uint port = rd32(fadt + 76), good = 0;

  outb(PIT_CONTROL, PIT_MODE2_WORD);
  outb(PIT_CH0, 0);
  outb(PIT_CH0, 0);             // a count of 0 is 65536
  for (int i = 0; i < WINDOWS && !good; i++)
    good = window_ok(port, PIT_TICKS);
  cprintf("pm timer at %x: high byte %x, 3x the PIT within 1%%: %s\n",
          port, inl(port) >> 24, verdict(check(good)));
  pm1(fadt);
}
