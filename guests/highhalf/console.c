// The console, as xv6's console.c: every character goes to COM1 and to the CGA text
// screen; keys typed on the keyboard (kbd.c, IRQ 1 through the I/O APIC) are echoed
// to both and collected into lines that consoleread hands out. The screen's cursor
// lives in the CRT controller's cursor location registers (14 high, 15 low; IBM's
// VGA Technical Reference), read back before every character.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "memlayout.h"
#include "defs.h"

#define CRTPORT    0x3D4  // the colour CRT controller: index here, data at +1
#define CURSOR_HI  14
#define CURSOR_LO  15
#define COLS       80
#define ROWS       25
#define CGA_ATTR   0x0700 // light grey on black
#define BACKSPACE  0x100  // consputc's own code: rub out the last character
#define INPUT_BUF  128

static volatile ushort *crt = P2V(0xB8000);
static int screenfrozen;

static struct {
  char buf[INPUT_BUF];
  uint r;  // read index
  uint w;  // write index: lines up to here are complete
  uint e;  // edit index
} input;

static int
cursor(void)
{
  int pos;

  outb(CRTPORT, CURSOR_HI);
  pos = inb(CRTPORT + 1) << 8;
  outb(CRTPORT, CURSOR_LO);
  return pos | inb(CRTPORT + 1);
}

static void
setcursor(int pos)
{
  outb(CRTPORT, CURSOR_HI);
  outb(CRTPORT + 1, pos >> 8);
  outb(CRTPORT, CURSOR_LO);
  outb(CRTPORT + 1, pos);
}

// Once the cursor reaches the bottom row, everything moves up a row, so the bottom
// row stays blank as xv6 keeps it.
static int
scroll(int pos)
{
  int i;

  for (i = 0; i < (ROWS - 2) * COLS; i++)
    crt[i] = crt[i + COLS];
  for (i = (ROWS - 2) * COLS; i < ROWS * COLS; i++)
    crt[i] = ' ' | CGA_ATTR;
  return pos - COLS;
}

static void
cgaputc(int c)
{
  int pos = cursor();

  if (c == '\n')
    pos += COLS - pos % COLS;
  else if (c == BACKSPACE) {
    if (pos > 0)
      crt[--pos] = ' ' | CGA_ATTR;
  } else
    crt[pos++] = (c & 0xFF) | CGA_ATTR;
  if (pos / COLS >= ROWS - 1)
    pos = scroll(pos);
  setcursor(pos);
}

// The screen first: once a line's newline is on COM1, the line is on the screen too
// (a test may read the screen as soon as it sees the line).
void
consputc(int c)
{
  if (!screenfrozen)
    cgaputc(c);
  if (c == BACKSPACE) {
    uartputc('\b');
    uartputc(' ');
    uartputc('\b');
  } else
    uartputc(c);
}

// From now on COM1 alone prints: the screen stays as a person last read it.
void
consolefreeze(void)
{
  screenfrozen = 1;
}

// IRQ 1: take every character the keyboard has, echo it, end lines at Enter; Escape
// ends a line too but is not echoed (it only says the person is done).
void
consoleintr(int (*getc)(void))
{
  int c;

  while ((c = getc()) >= 0) {
    if (c == '\b') {
      if (input.e != input.w) {
        input.e--;
        consputc(BACKSPACE);
      }
    } else if (c != 0 && input.e - input.r < INPUT_BUF) {
      input.buf[input.e++ % INPUT_BUF] = c;
      if (c != ESC)
        consputc(c);
      if (c == '\n' || c == ESC || input.e == input.r + INPUT_BUF)
        input.w = input.e;
    }
  }
}

// The next line typed, without its Enter, into DST (at most N - 1 characters); the
// character that ended it.
int
consoleread(char *dst, int n)
{
  int c = 0, i = 0;

  while (c != '\n' && c != ESC) {
    cli();
    while (input.r == input.w)
      safe_halt();  // sti; hlt: the interrupt cannot slip in between
    sti();
    c = input.buf[input.r++ % INPUT_BUF];
    if (c != '\n' && c != ESC && i < n - 1)
      dst[i++] = c;
  }
  dst[i] = 0;
  return c;
}
