// Printing what the device returned: bytes in hex, and one number for a whole blob.
#include "types.h"
#include "lib.h"
#include "fwcfg.h"

static const char digits[] = "0123456789abcdef";

void
hexbytes(const uchar *p, uint n)
{
  for (uint i = 0; i < n; i++) {
    uartputc(digits[p[i] >> 4]);
    uartputc(digits[p[i] & 0xF]);
  }
}

// Eight hex digits, most significant first.
void
hexword(uint x)
{
  for (int shift = 28; shift >= 0; shift -= 4)
    uartputc(digits[x >> shift & 0xF]);
}

// FNV-1a (32 bits), continued from H (FNV_START for a new blob): any changed or
// moved byte changes it.
uint
digest(uint h, const uchar *p, uint n)
{
  while (n--)
    h = (h ^ *p++) * 16777619u;
  return h;
}
