// pcprobe: see defs.h. The command line chooses a way to reset the machine at the
// end ("reset=92", "reset=cf9"); without one the probe leaves through isa-debug-exit.

#include "types.h"
#include "multiboot.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define MB_INFO_CMDLINE (1 << 2)

// The Multiboot information structure up to the command line (spec 3.3).
struct mbinfo {
  uint flags;
  uint mem_lower;
  uint mem_upper;
  uint boot_device;
  char *cmdline;
};

int
main(uint magic, struct mbinfo *info)
{
  uartinit();
  seginit(0);
  tvinit(T_BRKPT, 0);
  idtinit();
  irqinit();
  cprintf("pcprobe: magic %x\n", magic);
  cpuid_probe();
  memory_probe();
  hpet_probe();
  ports_probe();
  rtc_probe();
  ide_probe();
  if (info->flags & MB_INFO_CMDLINE)
    reset_probe(info->cmdline);
  cprintf("pcprobe: done\n");
  debug_exit(0);
}
