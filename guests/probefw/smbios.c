// The SMBIOS 2.x entry point (DMTF DSP0134, 5.2.1), found on a 16-byte boundary in
// 0xF0000-0xFFFFF, and every structure it points at: header, formatted area, strings.
#include "types.h"
#include "lib.h"
#include "defs.h"

#define END_OF_TABLE 127

// One structure (6.1.2); returns the next, after the strings' double NUL.
static const uchar *
structure(const uchar *s)
{
  const uchar *str = s + s[1];

  cprintf("  type %d len %x handle %x\n", s[0], s[1], rd16(s + 2));
  dump(s + 4, s[1] - 4);
  if (str[0] == 0 && str[1] == 0)
    return str + 2;
  while (str[0]) {
    cprintf("    '");
    while (*str)
      cprintf("%c", *str++);
    cprintf("'\n");
    str++;
  }
  return str + 1;
}

void
probe_smbios(void)
{
  const uchar *e = scan(0xF0000, 0x10000, "_SM_", 4);

  if (!e) {
    cprintf("smbios: no entry point\n");
    return;
  }
  cprintf("smbios entry at %x: len %x version %d.%d checksum %s maxsize %x "
          "rev %x intermediate %s table %x len %x count %d bcd %x\n",
          (uint)e, e[5], e[6], e[7], verdict(check(sum(e, e[5]) == 0)),
          rd16(e + 8), e[10], verdict(check(sum(e + 16, 15) == 0)),
          rd32(e + 24), rd16(e + 22), rd16(e + 28), e[30]);
  const uchar *s = (const uchar *)rd32(e + 24);
  for (;;) {
    uint type = s[0];
    s = structure(s);
    if (type == END_OF_TABLE)
      break;
  }
}
