// The Bochs VBE registers of QEMU's standard VGA (Bochs's vbe.h; QEMU's
// hw/display/vga.c): an index port 0x1CE and a data port 0x1CF (and 0x1D0), word
// registers, read one by one as a kernel's VBE driver finds the adapter.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define VBE_INDEX 0x1CE
#define VBE_DATA 0x1CF
#define VBE_DATA2 0x1D0
#define REGISTERS 0x0C  // ID up to the video memory size, and one past it
#define INDEX_ENABLE 4

void
vbe_probe(void)
{
  int i;

  cprintf("vbe: index %x\n", inw(VBE_INDEX));
  cprintf("vbe:");
  for (i = 0; i < REGISTERS; i++) {
    outw(VBE_INDEX, i);
    cprintf(" %x", inw(VBE_DATA));
  }
  cprintf("\nvbe at 1d0: %x, byte reads %x %x\n", inw(VBE_DATA2), inb(VBE_DATA), inb(VBE_DATA2));
  outw(VBE_INDEX, INDEX_ENABLE);
}
