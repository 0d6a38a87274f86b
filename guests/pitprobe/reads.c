// Reading the counters: the read-back status and its NULL COUNT bit, status and count
// latched together, repeated latches, a latch across a control word, the byte access
// modes and their flip-flop, and BCD ("Read Operations", "Read-Back Command").

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define LATE 0x1000  // ticks between a latch and its reading
#define FRESH(v) ((v) > LONG - LATE / 2)  // latched within LATE/2 ticks of a load

static uint
word(int ch)
{
  uint low;

  low = inb(PIT_CH0 + ch);
  return low | inb(PIT_CH0 + ch) << 8;
}

static void
null_count(void)
{
  uint control_word, first_byte;

  control(2, RW_WORD | MODE(2));
  control_word = status(2) & ~ST_OUT;
  outb(PIT_CH0 + 2, LONG & 0xFF);
  first_byte = status(2) & ~ST_OUT;
  outb(PIT_CH0 + 2, LONG >> 8);
  cprintf("status after control word %x, first byte %x, count %x\n", control_word,
          first_byte, status(2));
}

static void
latches(void)
{
  uint st, v, live;

  control(2, RW_WORD | MODE(0));
  load(2, LONG);
  outb(PIT_CONTROL, READ_BACK | RB_CH(2));  // status and count
  wait(LATE);
  st = inb(PIT_CH0 + 2);
  v = word(2);
  live = word(2);
  cprintf("both latched: status %x, count frozen %d, then live %d\n", st, FRESH(v),
          !FRESH(live));
  load(2, LONG);
  control(2, RW_LATCH);
  wait(LATE);
  control(2, RW_LATCH);
  outb(PIT_CONTROL, READ_BACK | RB_NO_COUNT | RB_CH(2));
  st = inb(PIT_CH0 + 2);
  v = word(2);
  cprintf("latched twice: status first %x, first count kept %d\n", st, FRESH(v));
  load(2, LONG);
  control(2, RW_LATCH);
  control(2, RW_WORD | MODE(0));
  load(2, LONG);
  wait(LATE);
  cprintf("latch across a control word: kept %d\n", FRESH(word(2)));
}

static void
access(void)
{
  uint first, second;

  control(2, RW_WORD | MODE(0));
  load(2, 0xA5FF);
  inb(PIT_CH0 + 2);  // the low byte, whatever it is by now
  second = inb(PIT_CH0 + 2);
  cprintf("word access: second byte high %d\n", second >= 0xA0 && second <= 0xA5);
  control(2, RW_MSB | MODE(0));
  outb(PIT_CH0 + 2, 0x80);
  first = inb(PIT_CH0 + 2);
  second = inb(PIT_CH0 + 2);
  cprintf("msb access: status %x, reads high %d %d\n", status(2),
          first >= 0x70 && first <= 0x80, second >= 0x70 && second <= 0x80);
  control(2, RW_LSB | MODE(0));
  outb(PIT_CH0 + 2, 0x80);
  wait(4 * 0x80);
  cprintf("lsb access: status %x\n", status(2));
}

static void
bcd(void)
{
  control(2, RW_WORD | MODE(0) | BCD);
  load(2, 0x1000);
  cprintf("bcd 1000: status %x, high byte above 9 %d\n", status(2) & ~ST_OUT,
          latched(2) >> 8 > 9);
  load(2, 0);
  wait(SHORT);  // 10000 or 65536 reads as 0 until the first tick
  cprintf("bcd 0: high byte above 99 %d\n", latched(2) >> 8 > 0x99);
}

void
reads_probe(void)
{
  null_count();
  latches();
  access();
  bcd();
}
