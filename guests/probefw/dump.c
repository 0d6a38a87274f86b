// Printing what was found: hex of a fixed width, and raw bytes sixteen to a line.
#include "types.h"
#include "lib.h"
#include "defs.h"

void
puthex(uint value, int digits)
{
  while (digits-- > 0)
    uartputc("0123456789abcdef"[(value >> (4 * digits)) & 0xF]);
}

// LEN bytes at P, sixteen to a line, each line led by its offset.
void
dump(const uchar *p, uint len)
{
  for (uint i = 0; i < len; i++) {
    if (i % 16 == 0) {
      cprintf("    ");
      puthex(i, 4);
      cprintf(":");
    }
    cprintf(" ");
    puthex(p[i], 2);
    if (i % 16 == 15 || i == len - 1)
      cprintf("\n");
  }
}

// Every firmware table is checksummed so that its bytes add up to 0 (mod 256).
uchar
sum(const uchar *p, uint len)
{
  uchar s = 0;

  while (len--)
    s += *p++;
  return s;
}

int
same(const void *a, const char *b, int n)
{
  const uchar *p = a;

  for (int i = 0; i < n; i++)
    if (p[i] != (uchar)b[i])
      return 0;
  return 1;
}

// N characters of a fixed-width field (OEM ids), unprintable ones as '.'.
void
putchars(const uchar *p, int n)
{
  for (int i = 0; i < n; i++)
    uartputc(p[i] >= 0x20 && p[i] < 0x7F ? p[i] : '.');
}

uint
rd16(const uchar *p)
{
  return p[0] | p[1] << 8;
}

uint
rd32(const uchar *p)
{
  return rd16(p) | rd16(p + 2) << 16;
}

const uchar *
scan(uint start, uint len, const char *sig, int siglen)
{
  for (uint a = start; a < start + len; a += 16)
    if (same((const uchar *)a, sig, siglen))
      return (const uchar *)a;
  return 0;
}

#define BDA_EBDA_SEGMENT 0x40E

// The first KiB of the extended BIOS data area, where the BIOS data area says it is:
// the first place both the MP and the ACPI specs look.
const uchar *
scan_ebda(const char *sig, int siglen)
{
  // GCC takes a pointer below 4 KiB made from a constant for a null one plus an
  // offset, and refuses to read through it: hide where the address came from.
  uint bda = BDA_EBDA_SEGMENT;
  asm("" : "+r" (bda));
  uint ebda = rd16((const uchar *)bda) << 4;

  return ebda ? scan(ebda, 1024, sig, siglen) : 0;
}
