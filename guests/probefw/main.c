// probefw: what the firmware of the PC that `qemu-system-i386 -kernel` presents leaves
// for a kernel to find, printed on COM1 so that pvtool's native mode can be compared
// with QEMU byte for byte: the MP tables, the ACPI tables, the SMBIOS tables, the PCI
// devices on bus 0 and the ACPI PM timer's rate. With "poweroff" on its command line
// it ends by an ACPI power-off instead of isa-debug-exit.
#include "types.h"
#include "multiboot.h"
#include "lib.h"
#include "defs.h"

#define MULTIBOOT_INFO_CMDLINE (1 << 2)

// The information structure up to the command line (Multiboot 0.6.96, 3.3).
struct boot_info {
  uint flags;
  uint mem_lower;
  uint mem_upper;
  uint boot_device;
  const char *cmdline;
};

static int
asked_for(const struct boot_info *info, const char *word)
{
  if (!(info->flags & MULTIBOOT_INFO_CMDLINE))
    return 0;
  for (const char *p = info->cmdline; *p; p++) {
    int n = 0;
    while (word[n] && p[n] == word[n])
      n++;
    if (!word[n])
      return 1;
  }
  return 0;
}

void
main(uint magic, const struct boot_info *info)
{
  uartinit();
  check(magic == MULTIBOOT_BOOTLOADER_MAGIC);
  probe_mp();
  const uchar *fadt = probe_acpi();
  probe_smbios();
  probe_pci();
  if (fadt)
    probe_pmtimer(fadt);
  if (fadt && asked_for(info, "poweroff"))
    poweroff(fadt);
  checkexit("probefw");
}

// The probe installs no IDT, so no trap ever reaches here; the library's trap entry
// still needs the symbol.
void
trap(struct trapframe *tf)
{
  (void)tf;
  cprintf("probefw: unexpected trap\n");
  debug_exit(2);
}
