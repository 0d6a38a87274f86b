// Powering off through ACPI as small kernels do it: find \_S5's package in the
// DSDT's AML by its name, take SLP_TYPa from its first element, and write it with
// SLP_EN to PM1a_CNT (ACPI 6.5, 7.4.2 "\_Sx (System States)" and 4.8.3.2.1).
#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define PACKAGE_OP  0x12
#define BYTE_PREFIX 0x0A
#define SLP_TYP_SHIFT 10
#define SLP_EN (1 << 13)
#define PM_TIMER_HZ 3579545
#define PM_TIMER_MASK 0xFFFFFF
#define SETTLE_SECONDS 2

// SLP_TYPa of \_S5: Name(_S5_, Package(){a, b, ...}); -1 if the DSDT has none.
static int
s5_sleep_type(const uchar *dsdt)
{
  uint len = rd32(dsdt + 4);

  for (uint i = 36; i + 8 < len; i++) {
    const uchar *p = dsdt + i;
    if (!same(p, "_S5_", 4) || p[4] != PACKAGE_OP)
      continue;
    p += 5 + ((p[5] >> 6) + 1) + 1;  // PkgLength, then NumElements
    return p[0] == BYTE_PREFIX ? p[1] : p[0];  // a ByteConst, or Zero or One
  }
  return -1;
}

// QEMU powers off from its main loop, a moment after the write: wait on the PM timer
// (24 bits) before saying the request failed, so that moment prints nothing.
static void
settle(ushort pm_timer)
{
  uint before = inl(pm_timer) & PM_TIMER_MASK, waited = 0;

  while (waited < SETTLE_SECONDS * PM_TIMER_HZ) {
    uint now = inl(pm_timer) & PM_TIMER_MASK;
    waited += (now - before) & PM_TIMER_MASK;
    before = now;
  }
}

void
poweroff(const uchar *fadt)
{
  int type = s5_sleep_type((const uchar *)rd32(fadt + 40));

  cprintf("probefw: powering off through ACPI, S5 sleep type %d\n", type);
  if (type >= 0)
    outw(rd32(fadt + 64), type << SLP_TYP_SHIFT | SLP_EN);
  settle(rd32(fadt + 76));
  cprintf("probefw: still running after the S5 request\n");
  debug_exit(1);
}
