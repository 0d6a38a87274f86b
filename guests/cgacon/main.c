// cgacon: a kernel whose console is the CGA text screen. It reports on COM1 what the
// screen, the VGA registers and the 8042 look like at entry (so pvtool's answers are
// compared with QEMU's), writes coloured text through its screen console until it
// scrolls, moves and reshapes the hardware cursor, then reads a line from the
// keyboard with IRQ 1 and echoes it on the screen. It waits for Escape before it
// leaves, so that the screen can be read while it is still there.

#include "types.h"
#include "mmu.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define IO_PIC1 0x20
#define IO_PIC2 0xA0
#define IRQ_KBD 1
#define ICW1_INIT_ICW4 0x11  // start initialization, edge triggered, an ICW4 follows
#define ICW4_8086      0x01
#define OCW2_EOI       0x20  // non-specific end of interrupt
#define ESC     0x1B
#define COLS    80
#define FIRMWARE_CURSOR (2 * COLS)  // SeaBIOS printed two lines
#define TEXT_LINES 30  // more than the screen's 25 rows: it scrolls

// The 8259 pair moved to vectors T_IRQ0.. (the BIOS's 8-15 are exceptions), every
// line masked but the keyboard's (Intel 8259A datasheet: ICW1-ICW4, then OCW1).
static void
picinit(void)
{
  outb(IO_PIC1, ICW1_INIT_ICW4);
  outb(IO_PIC1 + 1, T_IRQ0);
  outb(IO_PIC1 + 1, 1 << IRQ_SLAVE);
  outb(IO_PIC1 + 1, ICW4_8086);
  outb(IO_PIC2, ICW1_INIT_ICW4);
  outb(IO_PIC2 + 1, T_IRQ0 + 8);
  outb(IO_PIC2 + 1, IRQ_SLAVE);
  outb(IO_PIC2 + 1, ICW4_8086);
  outb(IO_PIC1 + 1, 0xFF & ~(1 << IRQ_KBD));
  outb(IO_PIC2 + 1, 0xFF);
}

void
trap(struct trapframe *tf)
{
  if (tf->trapno == T_IRQ0 + IRQ_KBD) {
    kbdintr();
    outb(IO_PIC1, OCW2_EOI);
    return;
  }
  cprintf("trap: unexpected vector %d, error code 0x%x\n", tf->trapno, tf->err);
  debug_exit(1);
}

// Lines in all sixteen foreground colours on changing backgrounds, enough to scroll.
static void
writetext(void)
{
  for (int line = 0; line < TEXT_LINES; line++) {
    cgacolor((line % 8) << 4 | (15 - line % 16));
    cgaputs("cgacon line ");
    cgaputc('0' + line / 10);
    cgaputc('0' + line % 10);
    cgaputs(": the quick brown fox jumps over the lazy dog\n");
  }
  cgacolor(0x1F);
  cgaputs("type a line> ");
}

// The line typed, echoed on the screen and returned in buf.
static void
readline(char *buf, int size)
{
  int n = 0, c;

  while ((c = kbdgetc()) != '\n') {
    if (c == 0 || c == ESC)
      continue;
    if (c == '\b' && n > 0)
      n--;
    else if (c != '\b' && n < size - 1)
      buf[n++] = c;
    cgaputc(c);
  }
  buf[n] = 0;
  cgaputc('\n');
}

int
main(uint magic, void *info)
{
  char line[64];

  (void)magic;
  (void)info;
  uartinit();
  screenprobe();
  vgaprobe();
  kbcprobe();

  cgainit();
  check(cgacursor() == FIRMWARE_CURSOR);
  writetext();
  cprintf("screen: %d lines written, %d scrolls, cursor at %d: %s\n", TEXT_LINES,
          scrolls, cgacursor(), verdict(check(scrolls > 0)));
  cgacursorshape(0x0E, 0x0F);
  cprintf("screen: cursor shape %x: %s\n", cgacursorstart(),
          verdict(check(cgacursorstart() == 0x0E)));

  seginit(0);
  tvinit(T_SYSCALL, 0);
  idtinit();
  picinit();
  cprintf("keyboard: type a line and press enter\n");
  readline(line, sizeof(line));
  kbdprintcodes();
  cprintf("keyboard: read \"%s\"\n", line);
  cprintf("cgacon: screen complete, press escape\n");
  while (kbdgetc() != ESC)
    ;
  checkexit("cgacon");
}
