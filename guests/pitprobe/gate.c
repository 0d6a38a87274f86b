// Channel 2's gate (port 0x61 bit 0) in each mode: whether a low gate holds the count,
// what OUT shows while it is low, and whether a rising edge restarts the count. OUT2 is
// read both ways: in the read-back status and at port 0x61 bit 5.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define HELD 0x400      // ticks the gate is held low
#define RESTART 0x2000  // ticks counted before a rising edge

static void
gate_low(int mode)
{
  uint before;
  int low;

  gate2(1);
  control(2, RW_WORD | MODE(mode));
  load(2, LONG);
  gate2(0);
  low = out(2);
  before = latched(2);
  wait(HELD);
  cprintf("gate low, mode %d: out %d, port 61 %d, counted %d\n", mode, low, out2(),
          latched(2) < before);
  gate2(1);
}

// A restarted count is back near LONG, above where it was just before the edge.
static void
gate_edge(int mode)
{
  uint before;
  int restarted;

  gate2(1);
  control(2, RW_WORD | MODE(mode));
  load(2, LONG);
  wait(RESTART);
  before = latched(2);
  gate2(0);
  gate2(1);
  restarted = latched(2) > before;
  cprintf("gate edge, mode %d: restarted %d, out %d, port 61 %d\n", mode, restarted,
          out(2), out2());
}

void
gate_probe(void)
{
  int mode;

  for (mode = 0; mode < 6; mode++)
    gate_low(mode);
  for (mode = 0; mode < 6; mode++)
    gate_edge(mode);
}
