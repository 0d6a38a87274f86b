// ACPI's tables (ACPI 6.5, chapter 5.2): the RSDP, found where 5.2.5.1 says to look,
// the RSDT and every table it lists, and the FACS and DSDT the FADT points at. Each
// table's header is printed field by field and its body byte by byte, but for the
// DSDT's AML, of which only the header is shown.
#include "types.h"
#include "lib.h"
#include "defs.h"

#define HEADER_LEN 36

static const uchar *
find_rsdp(void)
{
  const uchar *p = scan_ebda("RSD PTR ", 8);

  return p ? p : scan(0xE0000, 0x20000, "RSD PTR ", 8);
}

// The header every table but the FACS starts with (5.2.6).
static void
header(const uchar *t)
{
  cprintf("acpi ");
  putchars(t, 4);
  cprintf(" at %x: len %x rev %x checksum %s oem '", (uint)t, rd32(t + 4), t[8],
          verdict(check(sum(t, rd32(t + 4)) == 0)));
  putchars(t + 10, 6);
  cprintf("' table '");
  putchars(t + 16, 8);
  cprintf("' oemrev %x creator '", rd32(t + 24));
  putchars(t + 28, 4);
  cprintf("' creatorrev %x\n", rd32(t + 32));
}

static void
table(const uchar *t)
{
  header(t);
  dump(t + HEADER_LEN, rd32(t + 4) - HEADER_LEN);
}

// The FADT's fields a kernel reads (5.2.9), by name, before its bytes.
static void
fadt(const uchar *t)
{
  table(t);
  cprintf("  facs %x dsdt %x sci %d smi_cmd %x enable %x disable %x\n",
          rd32(t + 36), rd32(t + 40), rd16(t + 46), rd32(t + 48), t[52], t[53]);
  cprintf("  pm1a_evt %x pm1a_cnt %x pm_tmr %x gpe0 %x/%d flags %x\n",
          rd32(t + 56), rd32(t + 64), rd32(t + 76), rd32(t + 80), t[92], rd32(t + 112));
  const uchar *facs = (const uchar *)rd32(t + 36);
  cprintf("acpi ");
  putchars(facs, 4);
  cprintf(" at %x: len %x\n", (uint)facs, rd32(facs + 4));
  dump(facs + 8, rd32(facs + 4) - 8);
  const uchar *dsdt = (const uchar *)rd32(t + 40);
  header(dsdt);
  cprintf("  aml starts %x\n", dsdt[HEADER_LEN]);
}

// Returns the FADT, for the PM timer probe.
const uchar *
probe_acpi(void)
{
  const uchar *rsdp = find_rsdp(), *facp = 0;

  if (!rsdp) {
    cprintf("acpi: no RSDP\n");
    return 0;
  }
  cprintf("acpi rsdp at %x: rev %x checksum %s oem '", (uint)rsdp, rsdp[15],
          verdict(check(sum(rsdp, 20) == 0)));
  putchars(rsdp + 9, 6);
  cprintf("' rsdt %x\n", rd32(rsdp + 16));
  const uchar *rsdt = (const uchar *)rd32(rsdp + 16);
  table(rsdt);
  for (uint i = HEADER_LEN; i < rd32(rsdt + 4); i += 4) {
    const uchar *t = (const uchar *)rd32(rsdt + i);
    if (same(t, "FACP", 4)) {
      facp = t;
      fadt(t);
    } else {
      table(t);
    }
  }
  return facp;
}
