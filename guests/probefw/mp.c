// The MultiProcessor Specification 1.4's tables: the floating pointer structure
// (chapter 4.1), found where the spec says to look, and the configuration table it
// points at (4.2, the entries of 4.3).
#include "types.h"
#include "lib.h"
#include "defs.h"

static const uchar *
find_floating(void)
{
  const uchar *p = scan_ebda("_MP_", 4);

  if (!p)
    p = scan(0x9FC00, 1024, "_MP_", 4);
  if (!p)
    p = scan(0xF0000, 0x10000, "_MP_", 4);
  return p;
}

static void
entry(const uchar *e)
{
  static const char *kinds[] = {"processor", "bus", "ioapic", "ioint", "lint"};

  cprintf("  %s:", e[0] < 5 ? kinds[e[0]] : "unknown");
  for (int i = 1; i < (e[0] == 0 ? 20 : 8); i++) {
    cprintf(" ");
    puthex(e[i], 2);
  }
  cprintf("\n");
}

static void
config_table(const uchar *t)
{
  uint len = rd16(t + 4), count = rd16(t + 34);
  const uchar *e = t + 44;

  cprintf("mp config: sig ");
  putchars(t, 4);
  cprintf(" len %x rev %x checksum %s oem '", len, t[6], verdict(check(sum(t, len) == 0)));
  putchars(t + 8, 8);
  cprintf("' product '");
  putchars(t + 16, 12);
  cprintf("' oemtable %x/%x entries %d lapic %x extlen %x extsum %x\n",
          rd32(t + 28), rd16(t + 32), count, rd32(t + 36), rd16(t + 40), t[42]);
  for (uint i = 0; i < count; i++) {
    entry(e);
    e += e[0] == 0 ? 20 : 8;
  }
}

void
probe_mp(void)
{
  const uchar *f = find_floating();

  if (!f) {
    cprintf("mp: no floating pointer\n");
    return;
  }
  cprintf("mp floating pointer at %x: config %x len %d rev %x checksum %s features",
          (uint)f, rd32(f + 4), f[8] * 16, f[9], verdict(check(sum(f, 16) == 0)));
  for (int i = 11; i < 16; i++)
    cprintf(" %x", f[i]);
  cprintf("\n");
  if (rd32(f + 4))
    config_table((const uchar *)rd32(f + 4));
}
