// The MC146818 RTC's interrupts on IRQ 8: periodic (register A's rate), update-ended
// and alarm, and register C, whose flags a read clears.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define RTC_INDEX 0x70
#define RTC_DATA 0x71
#define REG_A 0x0A
#define REG_B 0x0B
#define REG_C 0x0C
#define SECONDS_ALARM 0x01
#define MINUTES_ALARM 0x03
#define HOURS_ALARM 0x05
#define B_PIE 0x40
#define B_AIE 0x20
#define B_UIE 0x10
#define DONT_CARE 0xC0
#define IRQ_RTC 8
#define MS 100000  // HPET ticks

static uint
rd(uint reg)
{
  return inb_indexed(RTC_INDEX, RTC_DATA, reg);
}

static void
wr(uint reg, uint value)
{
  outb_indexed(RTC_INDEX, RTC_DATA, reg, value);
}

static void
flags_without_interrupts(void)
{
  uint a = rd(REG_A), b = rd(REG_B), c = rd(REG_C), d = rd(0x0D);

  cprintf("rtc: a %x b %x c %x d %x\n", a, b, c & ~0x10, d);
  hpet_delay(3 * MS);
  c = rd(REG_C) & 0x40;
  cprintf("rtc: c after 3 ms without pie, pf %x\n", c);
}

static void
wait_interrupts(const char *what, uint enable, uint count)
{
  uint b = rd(REG_B), c, taken;

  rd(REG_C);
  nirq[IRQ_RTC] = 0;
  irqunmask(IRQ_RTC);
  wr(REG_B, b | enable);
  taken = waitirq(IRQ_RTC, count);
  wr(REG_B, b);
  irqmask(IRQ_RTC);
  c = rd(REG_C) & ~0x50;
  cprintf("rtc %s: taken %d, c %x, c now %x\n", what, taken,
          rtc_flags[(count - 1) & 3] & ~0x10, c);
}

void
rtc_probe(void)
{
  uint a = rd(REG_A);

  flags_without_interrupts();
  wait_interrupts("periodic 1024 Hz", B_PIE, 4);
  wr(REG_A, (a & ~0xF) | 0x3);  // 8192 Hz
  wait_interrupts("periodic 8192 Hz", B_PIE, 4);
  wr(REG_A, (a & ~0xF) | 0xF);  // 2 Hz
  wait_interrupts("periodic 2 Hz", B_PIE, 2);
  wr(REG_A, a);
  wait_interrupts("update-ended", B_UIE, 2);
  wr(SECONDS_ALARM, DONT_CARE);
  wr(MINUTES_ALARM, DONT_CARE);
  wr(HOURS_ALARM, DONT_CARE);
  wait_interrupts("alarm every second", B_AIE, 2);
}
