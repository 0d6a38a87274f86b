// probefw: what the firmware of the PC that `qemu-system-i386 -kernel` presents leaves
// for a kernel to find, printed on COM1 so that pvtool's native mode can be compared
// with QEMU byte for byte: the MP tables, the ACPI tables, the SMBIOS tables, the PCI
// devices on bus 0 and the ACPI PM timer's rate.
#include "types.h"
#include "multiboot.h"
#include "lib.h"
#include "defs.h"

void
main(uint magic, struct multiboot_info *info)
{
  (void)info;
  uartinit();
  check(magic == MULTIBOOT_BOOTLOADER_MAGIC);
  probe_mp();
  const uchar *fadt = probe_acpi();
  probe_smbios();
  probe_pci();
  if (fadt)
    probe_pmtimer(fadt);
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
