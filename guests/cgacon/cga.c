// The console on the CGA text screen, as xv6's console.c drives it: 80x25 cells of
// (character, attribute) at 0xB8000, the hardware cursor moved through the CRT
// controller's cursor location registers, the screen scrolled by one row when the
// cursor falls off the bottom. Register numbers from IBM's VGA Technical Reference.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define COLS 80
#define ROWS 25
#define CURSOR_HIGH 0x0E
#define CURSOR_LOW  0x0F
#define CURSOR_START 0x0A
#define CURSOR_END   0x0B
#define BLANK(attr) (' ' | (attr) << 8)

static volatile ushort *screen = (ushort *)0xB8000;
static int pos;  // the cursor, a cell index
static uchar attr = 0x07;
int scrolls;

static int
crtcread(int reg)
{
  return inb_indexed(CRTC_INDEX, CRTC_DATA, reg);
}

static void
crtcwrite(int reg, int value)
{
  outb_indexed(CRTC_INDEX, CRTC_DATA, reg, value);
}

int
cgacursor(void)
{
  return crtcread(CURSOR_HIGH) << 8 | crtcread(CURSOR_LOW);
}

static void
setcursor(int cell)
{
  crtcwrite(CURSOR_HIGH, cell >> 8);
  crtcwrite(CURSOR_LOW, cell);
}

// Start where the firmware left the cursor, below what it printed.
void
cgainit(void)
{
  pos = cgacursor();
}

void
cgacolor(int attribute)
{
  attr = attribute;
}

// Everything moves up a row; the last row is blanked in the current colour.
static void
scroll(void)
{
  for (int i = 0; i < (ROWS - 1) * COLS; i++)
    screen[i] = screen[i + COLS];
  for (int i = (ROWS - 1) * COLS; i < ROWS * COLS; i++)
    screen[i] = BLANK(attr);
  pos -= COLS;
  scrolls++;
}

void
cgaputc(int c)
{
  if (c == '\n')
    pos += COLS - pos % COLS;
  else if (c == '\b') {
    if (pos % COLS > 0)
      screen[--pos] = BLANK(attr);
  } else
    screen[pos++] = (c & 0xFF) | attr << 8;
  if (pos >= ROWS * COLS)
    scroll();
  setcursor(pos);
}

void
cgaputs(const char *s)
{
  while (*s)
    cgaputc(*s++);
}

// The cursor's shape: scan lines START to END of the character cell.
void
cgacursorshape(int start, int end)
{
  crtcwrite(CURSOR_START, start);
  crtcwrite(CURSOR_END, end);
}

int
cgacursorstart(void)
{
  return crtcread(CURSOR_START);
}
