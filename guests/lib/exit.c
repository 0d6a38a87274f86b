// Leaving a guest. QEMU's isa-debug-exit device (-device isa-debug-exit,iobase=0xf4)
// ends the emulator with status (code << 1) | 1 when the guest writes code to it;
// pvtool's machine has the same device.

#include "types.h"
#include "x86.h"
#include "lib.h"

#define DEBUG_EXIT_PORT 0xF4

void
debug_exit(int code)
{
  outb(DEBUG_EXIT_PORT, code);

  // No such device (a real PC): stop here. With IF clear only an NMI wakes hlt,
  // hence the loop.
  for (;;) {
    cli();
    hlt();
  }
}
