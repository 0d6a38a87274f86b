// What the VGA and the 8042 look like to a kernel at entry: cgacon prints every
// register a console or keyboard driver may read, so that pvtool's answers are
// compared with QEMU's byte for byte. Register numbering from IBM's VGA Technical
// Reference; the 8042's commands from the IBM PC AT Technical Reference.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define CRTC_REGS 0x19  // horizontal total .. line compare
#define SEQ_REGS  0x05
#define GFX_REGS  0x09
#define ATTR_REGS 0x15
#define ATTR_PAS  0x20  // palette address source: the display keeps running

static void
printindexed(const char *name, int index_port, int data_port, int count)
{
  cprintf("%s:", name);
  for (int i = 0; i < count; i++) {
    outb(index_port, i);
    cprintf(" %x", inb(data_port));
  }
  cprintf("\n");
}

// The attribute controller shares one port for index and data: reading the input
// status register puts its flip-flop back on "index".
static void
printattr(void)
{
  cprintf("attr:");
  for (int i = 0; i < ATTR_REGS; i++) {
    inb(VGA_STATUS);
    outb(VGA_ATTR, i | ATTR_PAS);
    cprintf(" %x", inb(VGA_ATTR + 1));
  }
  inb(VGA_STATUS);
  cprintf("\n");
}

void
vgaprobe(void)
{
  printindexed("crtc", CRTC_INDEX, CRTC_DATA, CRTC_REGS);
  outb(CRTC_INDEX, 0x3F);
  cprintf("crtc index 0x3f reads back %x, register %x\n", inb(CRTC_INDEX), inb(CRTC_DATA));
  // Register 0x11 bit 7 protects 0x00-0x07 (all but bit 4 of 0x07) from writes.
  outb(CRTC_INDEX, 0x01);
  outb(CRTC_DATA, 0x00);
  cprintf("crtc 0x01 after writing 0: %x\n", inb(CRTC_DATA));
  printindexed("seq", 0x3C4, 0x3C5, SEQ_REGS);
  printindexed("gfx", 0x3CE, 0x3CF, GFX_REGS);
  printattr();
  cprintf("misc output %x, feature %x, input status 0 %x, dac mask %x, dac state %x\n",
          inb(0x3CC), inb(0x3CA), inb(0x3C2), inb(0x3C6), inb(0x3C7));
  cprintf("input status 1:");
  for (int i = 0; i < 4; i++)
    cprintf(" %x", inb(VGA_STATUS));
  cprintf("\nmono crtc %x %x, mono status %x, 0x3d0 %x\n",
          inb(0x3B4), inb(0x3B5), inb(0x3BA), inb(0x3D0));
}

// The screen as the firmware left it: each row that is not blank (a blank cell is a
// space on light grey, 0x0720), its characters, and the attributes they wear.
void
screenprobe(void)
{
  volatile ushort *screen = (ushort *)0xB8000;

  for (int row = 0; row < 25; row++) {
    int last = -1;
    for (int col = 0; col < 80; col++)
      if (screen[row * 80 + col] != 0x0720)
        last = col;
    if (last < 0)
      continue;
    cprintf("entry row %d:", row);
    for (int col = 0; col <= last; col++)
      cprintf(" %x", screen[row * 80 + col]);
    cprintf("\n");
  }
}

// The 8042 answers a command within a few microseconds; a loop this long means it
// will not answer at all.
static int
kbcreply(void)
{
  for (int i = 0; i < 10000; i++)
    if (inb(KBC_STATUS) & KBC_OBF)
      return inb(KBC_DATA);
  return -1;
}

static int
kbccommand(int command)
{
  outb(KBC_STATUS, command);
  return kbcreply();
}

// The controller's own commands.
static void
controllerprobe(void)
{
  cprintf("8042 status at entry %x\n", inb(KBC_STATUS));
  cprintf("8042 command byte %x\n", kbccommand(0x20));
  int reply = kbccommand(0xAA);
  cprintf("8042 self test %x, status %x\n", reply, inb(KBC_STATUS));
  cprintf("8042 command byte after self test %x\n", kbccommand(0x20));
  cprintf("8042 keyboard interface test %x\n", kbccommand(0xAB));
  cprintf("8042 mouse interface test %x\n", kbccommand(0xA9));
  cprintf("8042 output port %x\n", kbccommand(0xD0));
  cprintf("8042 input port %x\n", kbccommand(0xC0));
  outb(KBC_STATUS, 0xAD);
  cprintf("8042 keyboard disabled: command byte %x\n", kbccommand(0x20));
  outb(KBC_STATUS, 0xAE);
  cprintf("8042 keyboard enabled: command byte %x\n", kbccommand(0x20));
  // The kernel runs at 1 MiB: A20 must stay on (0xDD would turn it off).
  outb(KBC_STATUS, 0xDF);
  cprintf("8042 a20 on: output port %x\n", kbccommand(0xD0));
  outb(KBC_STATUS, 0xD2);
  outb(KBC_DATA, 0x5A);
  cprintf("8042 status after a data write %x\n", inb(KBC_STATUS));
  reply = kbcreply();
  cprintf("8042 echo through the output buffer %x, status %x\n", reply, inb(KBC_STATUS));
  cprintf("8042 data read again %x\n", inb(KBC_DATA));
  reply = kbccommand(0xA1);
  cprintf("8042 unknown command a1: %x, status %x\n", reply, inb(KBC_STATUS));
}

// A keyboard command's answer: up to three bytes, -1 for each that never came.
static void
keyboardcommand(const char *what, int command, int argument)
{
  outb(KBC_DATA, command);
  if (argument >= 0) {
    kbcreply();  // the command's acknowledgement, before its argument is sent
    outb(KBC_DATA, argument);
  }
  int first = kbcreply(), second = kbcreply(), third = kbcreply();
  cprintf("keyboard %s: %x %x %x\n", what, first, second, third);
}

// Commands for the keyboard, through the controller's data port.
static void
keyboardprobe(void)
{
  keyboardcommand("identify", 0xF2, -1);
  outb(KBC_DATA, 0xEE);
  cprintf("8042 status after a keyboard command %x\n", inb(KBC_STATUS));
  cprintf("keyboard echo: %x\n", kbcreply());
  outb(KBC_STATUS, 0xAD);
  keyboardcommand("echo with the interface disabled", 0xEE, -1);
  cprintf("8042 command byte after it %x\n", kbccommand(0x20));
  keyboardcommand("scan code set", 0xF0, 0x00);
  keyboardcommand("leds", 0xED, 0x00);
  keyboardcommand("unknown command 0x01", 0x01, -1);
}

void
kbcprobe(void)
{
  controllerprobe();
  keyboardprobe();
}
