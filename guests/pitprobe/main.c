// pitprobe: see defs.h. The helpers every probe uses, the PIT as the firmware left
// it, and the order of the probes.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define STOPWATCH 1

void
control(int ch, int word)
{
  outb(PIT_CONTROL, SC(ch) | word);
}

// Write a count as the channel's access mode (a word) takes it.
void
load(int ch, uint count)
{
  outb(PIT_CH0 + ch, count & 0xFF);
  outb(PIT_CH0 + ch, count >> 8);
}

// Read-back, status only ("Read-Back Command").
uint
status(int ch)
{
  outb(PIT_CONTROL, READ_BACK | RB_NO_COUNT | RB_CH(ch));
  return inb(PIT_CH0 + ch);
}

// Two bytes from the channel, low first (word access: latched or live).
uint
word(int ch)
{
  uint low;

  low = inb(PIT_CH0 + ch);
  return low | inb(PIT_CH0 + ch) << 8;
}

// Counter latch command, then both bytes.
uint
latched(int ch)
{
  outb(PIT_CONTROL, SC(ch) | RW_LATCH);
  return word(ch);
}

int
out(int ch)
{
  return (status(ch) & ST_OUT) != 0;
}

// Poll OUT until it reads LEVEL; whether it did before the limit.
int
waitout(int ch, int level)
{
  uint spins;

  for (spins = 0; out(ch) != level && spins < WAIT_LIMIT; spins++)
    ;
  return spins < WAIT_LIMIT;
}

// At least TICKS input-clock pulses: channel 1 in mode 0 until its OUT rises.
void
wait(uint ticks)
{
  control(STOPWATCH, RW_WORD | MODE(0));
  load(STOPWATCH, ticks);
  waitout(STOPWATCH, 1);
}

void
gate2(int level)
{
  outb(PORT_B, level ? B_GATE2 : 0);
}

int
out2(void)
{
  return (inb(PORT_B) & B_OUT2) != 0;
}

// What the firmware left: each channel's status without OUT (its phase depends on
// when the firmware last loaded the channel), and port 0x61's gate bit.
static void
entry_probe(void)
{
  cprintf("entry: status %x %x %x, gate2 %x\n", status(0) & ~ST_OUT,
          status(1) & ~ST_OUT, status(2) & ~ST_OUT, inb(PORT_B) & B_GATE2);
}

int
main(void)
{
  uartinit();
  cprintf("pitprobe: start\n");
  entry_probe();
  gate2(1);
  modes_probe(0);
  modes_probe(2);
  gate_probe();
  reads_probe();
  cprintf("pitprobe: done\n");
  debug_exit(0);
}

// The probe runs with interrupts off and sets up no IDT: any trap is a fault of its own.
void
trap(struct trapframe *tf)
{
  (void)tf;
  cprintf("pitprobe: unexpected trap\n");
  debug_exit(2);
}
