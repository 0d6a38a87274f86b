// Each counting mode on one channel with its gate high ("Mode Definitions"): OUT right
// after a load and after the count has certainly passed, and how the count moves on.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define PASSED (4 * SHORT)  // a wait that outlives a SHORT count
#define SQUARE 0x8000       // mode 3: half a period (14 ms) outlives a read after the load

// Poll the count until it goes up: a reload.
static int
reloads(int ch)
{
  uint spins, prev, now;

  prev = latched(ch);
  for (spins = 0; spins < WAIT_LIMIT; spins++) {
    now = latched(ch);
    if (now > prev)
      return 1;
    prev = now;
  }
  return 0;
}

// Mode 0: OUT rises at terminal count; a control word and the first byte of a new
// count are written while OUT is high, then while the count runs.
static void
mode0(int ch)
{
  int low, rose, wrapped, control_word, first_byte, running;

  control(ch, RW_WORD | MODE(0));
  load(ch, LONG);
  low = out(ch);
  load(ch, SHORT);
  rose = waitout(ch, 1);
  wait(SHORT);  // a count read at terminal count itself is 0
  wrapped = latched(ch) > SHORT;
  control(ch, RW_WORD | MODE(0));
  control_word = out(ch);
  outb(PIT_CH0 + ch, 0);
  first_byte = out(ch);
  outb(PIT_CH0 + ch, LONG >> 8);
  cprintf("ch%d mode 0: out %d, rose %d, wrapped %d, after control word %d, "
          "after first byte %d, after count %d\n", ch, low, rose, wrapped, control_word,
          first_byte, out(ch));
  load(ch, SHORT);
  outb(PIT_CH0 + ch, 0);  // half of a new count while the old one runs
  wait(PASSED);
  running = out(ch);
  outb(PIT_CH0 + ch, LONG >> 8);
  cprintf("ch%d mode 0 half-written: out %d, then %d\n", ch, running, out(ch));
  load(ch, 0);
  low = out(ch);
  wait(SHORT);  // 65536 reads as 0 until the first tick
  cprintf("ch%d mode 0 count 0: out %d, high byte above 7f %d\n", ch, low,
          latched(ch) >> 8 >= 0x80);
}

// Modes 1, 4 and 5 (and 6 and 7, which the control word also accepts): OUT after a
// load and after the count passed, the mode the status reports, and whether the count
// wrapped past terminal count as a one-shot's does (a periodic count reloads instead).
static void
oneshot(int ch, int mode)
{
  int before, after;

  control(ch, RW_WORD | MODE(mode));
  load(ch, LONG);
  before = out(ch);
  load(ch, SHORT);
  wait(PASSED);
  after = out(ch);
  cprintf("ch%d mode %d: status mode %d, out %d, after the count %d, wrapped %d\n", ch,
          mode, (status(ch) >> 1) & 7, before, after, latched(ch) > SHORT);
}

// Modes 2 and 3: the status after a load, mode 2's reloads, mode 3's OUT falling and
// rising again.
static void
periodic(int ch)
{
  int at_once, high, fell, rose;

  control(ch, RW_WORD | MODE(2));
  load(ch, LONG);
  cprintf("ch%d mode 2: status %x\n", ch, status(ch));
  load(ch, SHORT);  // mid-period: QEMU takes it at once, the datasheet at the reload
  at_once = latched(ch) <= SHORT;
  cprintf("ch%d mode 2 short: at once %d, reloads %d\n", ch, at_once, reloads(ch));
  control(ch, RW_WORD | MODE(3));
  load(ch, SQUARE);
  high = out(ch);
  fell = waitout(ch, 0);
  rose = waitout(ch, 1);
  cprintf("ch%d mode 3: out %d, fell %d, rose %d, even %d\n", ch, high, fell, rose,
          (latched(ch) & 1) == 0);
}

void
modes_probe(int ch)
{
  int mode;

  mode0(ch);
  periodic(ch);
  oneshot(ch, 1);
  for (mode = 4; mode < 8; mode++)
    oneshot(ch, mode);
}
