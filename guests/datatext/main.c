// datatext: a kernel whose data sits among its code, as small kernels' often does
// (kernel.ld): strings whose letters are port-I/O opcodes ('l' 'm' 'n' 'o' are
// insb, insd, outsb, outsd), a table of bytes that are cli, sti and hlt, and a switch
// gcc compiles to a jump table in .rodata. It prints what it reads from them, so a
// patcher that rewrote any of those bytes changes what it prints.

#include "types.h"
#include "x86.h"
#include "lib.h"

static const char *const words[] = {
  "lemon", "melon", "moon", "noon", "onion", "lion", "mono", "nylon",
};

// cli, sti, hlt, in al,0x60, out 0x80,al: opcodes, kept here as numbers.
static const uchar opcodes[] = { 0xfa, 0xfb, 0xf4, 0xe4, 0x60, 0xe6, 0x80 };

// A dense switch whose cases do different work: gcc -O2 makes it
// `jmp *table(,%eax,4)` with the table in .rodata.
static int
step(int acc, char c)
{
  switch (c) {
  case 'e': return acc + 1;
  case 'i': return acc * 2;
  case 'l': return acc - 3;
  case 'm': return acc ^ 5;
  case 'n': return acc << 1;
  case 'o': return acc * 3 + 1;
  case 'y': return acc / 2;
  default: return acc + 17;
  }
}

static int
wordscore(const char *w)
{
  int acc = 0;

  for (; *w; w++)
    acc = step(acc, *w);
  return acc;
}

static uint
opcodesum(void)
{
  uint sum = 0;
  uint i;

  for (i = 0; i < sizeof(opcodes); i++)
    sum = sum * 31 + opcodes[i];
  return sum;
}

// datatext loads no IDT and never enables interrupts: were a byte of its data taken
// for code and rewritten, this is where it would end, saying where it ran.
void
trap(struct trapframe *tf)
{
  cprintf("datatext: trap %d at eip %x\n", tf->trapno, tf->eip);
  debug_exit(1);
}

void
main(uint magic, uint mbinfo)
{
  uint i;
  int total = 0;

  (void)magic;
  (void)mbinfo;
  uartinit();
  for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
    cprintf("%s %d\n", words[i], wordscore(words[i]));
    total += wordscore(words[i]);
  }
  cprintf("opcodes %x\n", opcodesum());
  check(total == 171);
  check(opcodesum() == 0x62fdd1a9);
  checkexit("datatext");
}
