// The keyboard behind the 8042: IRQ 1 says a byte waits in the output buffer; the
// controller translates the keyboard's scan codes to set 1 (command byte bit 6), so
// a key's make code is its number and its break code the same with bit 7 set. The
// map is a US keyboard's (IBM PC AT Technical Reference, keyboard scan codes).

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define BREAK      0x80
#define LSHIFT     0x2A
#define RSHIFT     0x36
#define NCODES     0x3A  // up to the space bar

static const char normal[NCODES] =
  "\0\x1b" "1234567890-=\b\t"
  "qwertyuiop[]\n\0as"
  "dfghjkl;'`\0\\zxcvbnm,./\0*\0 ";
static const char shifted[NCODES] =
  "\0\x1b" "!@#$%^&*()_+\b\t"
  "QWERTYUIOP{}\n\0AS"
  "DFGHJKL:\"~\0|ZXCVBNM<>?\0*\0 ";

static uchar codes[64];  // what IRQ 1 received, in order
static volatile int ncodes;
static int taken, shift;

// IRQ 1: one byte per interrupt; keep it (a full buffer drops it).
void
kbdintr(void)
{
  uchar code = inb(KBC_DATA);

  if (ncodes < (int)sizeof(codes))
    codes[ncodes++] = code;
}

// The next key's character, waiting for it with interrupts on; 0 for keys that
// have none (shift, breaks).
int
kbdgetc(void)
{
  while (taken == ncodes)
    safe_halt();
  cli();
  uchar code = codes[taken++];
  int up = code & BREAK;
  code &= ~BREAK;
  if (code == LSHIFT || code == RSHIFT) {
    shift = !up;
    return 0;
  }
  if (up || code >= NCODES)
    return 0;
  return (shift ? shifted : normal)[code];
}

void
kbdprintcodes(void)
{
  cprintf("keyboard: %d scan codes:", ncodes);
  for (int i = 0; i < ncodes; i++)
    cprintf(" %x", codes[i]);
  cprintf("\n");
}
