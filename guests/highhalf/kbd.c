// The keyboard behind the 8042, as xv6's kbd.c reads it: a byte waits at the data
// port while status bit 0 is set; the controller translates to scan code set 1, where
// a key's make code is its number and its break code the same with bit 7 set; 0xE0
// prefixes the keys a PC/XT keyboard did not have. A US layout, shift only (IBM PC AT
// Technical Reference, keyboard scan codes).

#include "types.h"
#include "x86.h"
#include "defs.h"

#define KBSTATP   0x64  // status
#define KBS_DIB   0x01  // data in buffer
#define KBDATAP   0x60
#define E0ESC     0xE0
#define BREAK     0x80
#define LSHIFT    0x2A
#define RSHIFT    0x36
#define NCODES    0x3A  // the map ends at the space bar

static const uchar normalmap[NCODES] =
  "\0\x1b" "1234567890-=\b\t"
  "qwertyuiop[]\n\0as"
  "dfghjkl;'`\0\\zxcvbnm,./\0*\0 ";
static const uchar shiftmap[NCODES] =
  "\0\x1b" "!@#$%^&*()_+\b\t"
  "QWERTYUIOP{}\n\0AS"
  "DFGHJKL:\"~\0|ZXCVBNM<>?\0*\0 ";

static int shift, escaped;

// The character of the next byte waiting, 0 for a byte that types none, -1 if
// nothing waits.
int
kbdgetc(void)
{
  uint data;

  if ((inb(KBSTATP) & KBS_DIB) == 0)
    return -1;
  data = inb(KBDATAP);
  if (data == E0ESC) {
    escaped = 1;
    return 0;
  }
  if (escaped) {  // the keypad's and the right-hand keys: none types here
    escaped = 0;
    return 0;
  }
  if ((data & ~BREAK) == LSHIFT || (data & ~BREAK) == RSHIFT) {
    shift = !(data & BREAK);
    return 0;
  }
  if ((data & BREAK) || data >= NCODES)
    return 0;
  return (shift ? shiftmap : normalmap)[data];
}

void
kbdintr(void)
{
  consoleintr(kbdgetc);
}
