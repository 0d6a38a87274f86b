// Reading the counters: the read-back status and its NULL COUNT bit, status and count
// latched together, repeated latches, a latch across a control word, the byte access
// modes and their flip-flop, and BCD ("Read Operations", "Read-Back Command").

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define LATE 0x4000  // ticks between a latch and its reading
// A count latched LATE ticks before LIVE was read; one latched just now is within LATE/2.
#define KEPT(v, live) ((v) - (live) > LATE / 2)
#define WORD_COUNT 0xC0FF
#define HIGH(b) ((b) >= 0x80 && (b) <= 0xC0)  // WORD_COUNT's high byte, counted down
#define BCD_WAIT 0x3000  // more than 10000 ticks, less than 65536

// Channel 2 has a status and a count latched LATE ticks ago: the status comes first.
static void
latched_report(const char *what)
{
  uint st, v;

  st = inb(PIT_CH0 + 2);
  v = word(2);
  cprintf("%s: status %x, count kept %d\n", what, st, KEPT(v, word(2)));
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
  uint v;

  control(2, RW_WORD | MODE(0));
  load(2, LONG);
  outb(PIT_CONTROL, READ_BACK | RB_CH(2));  // status and count
  wait(LATE);
  latched_report("both latched");
  load(2, LONG);
  control(2, RW_LATCH);
  wait(LATE);
  control(2, RW_LATCH);
  outb(PIT_CONTROL, READ_BACK | RB_NO_COUNT | RB_CH(2));
  latched_report("latched twice");
  load(2, LONG);
  control(2, RW_LATCH);
  control(2, RW_WORD | MODE(0));
  wait(LATE);
  v = word(2);
  cprintf("latch across a control word: kept %d\n", KEPT(v, word(2)));
}

static void
access(void)
{
  uint first, second;

  control(2, RW_WORD | MODE(0));
  load(2, WORD_COUNT);
  inb(PIT_CH0 + 2);  // the low byte, whatever it is by now
  first = inb(PIT_CH0 + 2);
  inb(PIT_CH0 + 2);
  control(2, RW_WORD | MODE(0));  // restarts the flip-flop between the two bytes
  inb(PIT_CH0 + 2);
  second = inb(PIT_CH0 + 2);
  cprintf("word access: second byte high %d, after a control word %d\n", HIGH(first),
          HIGH(second));
  outb(PIT_CH0 + 2, 0x12);  // half a count, dropped by the control word
  control(2, RW_WORD | MODE(0));
  load(2, LONG);
  cprintf("half a count before a control word: dropped %d\n", latched(2) >> 8 >= 0xE0);
  control(2, RW_MSB | MODE(0));
  outb(PIT_CH0 + 2, 0x80);
  first = inb(PIT_CH0 + 2);
  second = inb(PIT_CH0 + 2);
  cprintf("msb access: status %x, reads high %d %d\n", status(2),
          first >= 0x40 && first <= 0x80, second >= 0x40 && second <= 0x80);
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
  cprintf("bcd 1000: status %x\n", status(2) & ~ST_OUT);
  load(2, 0);  // 10000 ticks in BCD, 65536 in binary
  wait(BCD_WAIT);
  cprintf("bcd 0: out after %x ticks %d\n", BCD_WAIT, out(2));
}

void
reads_probe(void)
{
  null_count();
  latches();
  access();
  bcd();
}
