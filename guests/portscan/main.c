// portscan: see defs.h.

#include "types.h"
#include "multiboot.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

static int
asked_all(struct multiboot_info *info)
{
  char *s;

  if (!(info->flags & MULTIBOOT_INFO_CMDLINE))
    return 0;
  for (s = info->cmdline; *s; s++)
    if (s[0] == 'a' && s[1] == 'l' && s[2] == 'l')
      return 1;
  return 0;
}

int
main(uint magic, struct multiboot_info *info)
{
  (void)magic;
  uartinit();
  cprintf("portscan\n");
  scan(asked_all(info));
  vbe_probe();
  fdc_probe();
  aux_probe();
  cprintf("portscan: done\n");
  debug_exit(0);
}

// The probe runs with interrupts off and sets up no IDT: any trap is a fault of
// the probe's own, reported and ended.
void
trap(struct trapframe *tf)
{
  cprintf("portscan: trap %d\n", tf->trapno);
  debug_exit(1);
}
