// modcmd: what the loader says of the command line and the modules. It prints the
// command line, then each module's string, length and bytes (printable ones as they
// are, the others as \xNN), so a loader that drops, reorders, truncates or misplaces
// any of them prints other bytes than QEMU's -kernel with -append and -initrd.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "multiboot.h"

#define MAX_SHOWN 64  // bytes of each module printed

static void
show(const uchar *p, uint n)
{
  uint i;

  for (i = 0; i < n && i < MAX_SHOWN; i++) {
    if (p[i] >= ' ' && p[i] < 0x7f && p[i] != '\\')
      cprintf("%c", p[i]);
    else
      cprintf("\\x%x", p[i]);
  }
  if (n > MAX_SHOWN)
    cprintf("...");
}

int
main(uint magic, struct multiboot_info *info)
{
  uint i;
  struct multiboot_module *m;

  uartinit();
  check(magic == MULTIBOOT_BOOTLOADER_MAGIC);
  if (check(info->flags & MULTIBOOT_INFO_CMDLINE))
    cprintf("modcmd: cmdline \"%s\"\n", info->cmdline);
  if (check(info->flags & MULTIBOOT_INFO_MODS)) {
    cprintf("modcmd: %d modules\n", info->mods_count);
    for (i = 0; i < info->mods_count; i++) {
      m = &info->mods_addr[i];
      cprintf("modcmd: module %d \"%s\", %d bytes: ", i, m->string,
              m->mod_end - m->mod_start);
      show(m->mod_start, m->mod_end - m->mod_start);
      cprintf("\n");
    }
  }
  checkexit("modcmd");
}
