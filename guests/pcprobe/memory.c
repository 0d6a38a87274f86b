// Physical addresses with nothing behind them: what reads find and whether writes
// stay. Paging is off, so these are the bus addresses themselves.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

static const uint holes[] = {
  0x08000000,  // just past 128 MiB of RAM
  0x20000000,
  0xC0000000,  // in the PCI hole
  0xFEBFF000,
  0xFED80000,  // past the HPET's page
};

void
memory_probe(void)
{
  uint i;

  for (i = 0; i < sizeof(holes) / sizeof(holes[0]); i++) {
    volatile uint *word = (volatile uint *)holes[i];
    volatile uchar *byte = (volatile uchar *)(holes[i] + 5);
    uint before = *word;
    *word = 0x12345678;
    cprintf("memory %x: read %x byte %x after write %x\n", holes[i], before, *byte, *word);
  }
}
