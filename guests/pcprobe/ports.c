// System control port B (0x61: PIT channel 2's gate and OUT2, the speaker, the
// refresh toggle), PIT channel 2 used the way kernels calibrate their delay loops,
// and system control port A (0x92: fast A20).

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define PORT_B 0x61
#define PORT_A 0x92
#define PIT_CH2 0x42
#define PIT_CONTROL 0x43
#define B_GATE2 0x01
#define B_SPEAKER 0x02
#define B_OUT2 0x20
#define B_REFRESH 0x10
// 30 ms of channel 2: long enough that a loaded host running QEMU does not let it
// expire before the probe has looked at it.
#define CALIBRATE 35795

static uint
channel2(void)
{
  uint low;

  outb(PIT_CONTROL, 0x80);  // latch channel 2
  low = inb(PIT_CH2);
  return low | inb(PIT_CH2) << 8;
}

static void
calibrate(void)
{
  uint spins, a;

  outb(PORT_B, (inb(PORT_B) & ~B_SPEAKER) | B_GATE2);
  outb(PIT_CONTROL, 0xB0);  // channel 2, lobyte/hibyte, mode 0
  outb(PIT_CH2, CALIBRATE & 0xFF);
  outb(PIT_CH2, CALIBRATE >> 8);
  a = inb(PORT_B) & B_OUT2;
  cprintf("port 61 after load: out2 %x\n", a);
  a = channel2();
  for (spins = 0; !(inb(PORT_B) & B_OUT2) && spins < 100000000; spins++)
    ;
  cprintf("pit channel 2: counted down %d, out2 rose %d\n", a <= CALIBRATE && a > 0,
          spins < 100000000);
  outb(PIT_CONTROL, 0xB6);  // mode 3
  outb(PIT_CH2, 0);
  outb(PIT_CH2, 0);
  outb(PORT_B, inb(PORT_B) & ~B_GATE2);
  cprintf("port 61 mode 3 gate low: %x\n", inb(PORT_B) & ~0x10);
}

void
ports_probe(void)
{
  uint i, v[4];

  // The refresh bit toggles on every read, from a phase the firmware's own reads
  // left. OUT2 is left out: on QEMU it follows the host's clock since the firmware last
  // loaded channel 2, so on a loaded host it can change between two reads.
  for (i = 0; i < 4; i++)
    v[i] = inb(PORT_B);
  cprintf("port 61: low bits %x, refresh toggles %x %x %x\n", v[0] & 0xF,
          (v[0] ^ v[1]) & B_REFRESH, (v[1] ^ v[2]) & B_REFRESH, (v[2] ^ v[3]) & B_REFRESH);
  outb(PORT_B, 0xFF);
  v[0] = inb(PORT_B);
  outb(PORT_B, 0x00);
  v[1] = inb(PORT_B);
  cprintf("port 61 written ff: %x, 00: %x\n", v[0] & ~0x10, v[1] & ~0x30);
  calibrate();
  v[0] = inb(PORT_A);
  outb(PORT_A, 0xFE);
  v[1] = inb(PORT_A);
  cprintf("port 92: %x, written fe: %x\n", v[0], v[1]);
  outb(PORT_A, 0x02);
}
