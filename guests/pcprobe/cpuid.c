// Every CPUID leaf a kernel reads: the basic leaves up to leaf 0's maximum, the
// extended ones up to 0x80000000's maximum (the brand string among them).

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

static void
leaf(uint eax, uint ecx)
{
  uint a, b, c, d;

  asm volatile("cpuid" : "=a" (a), "=b" (b), "=c" (c), "=d" (d) : "a" (eax), "c" (ecx));
  cprintf("cpuid %x.%x: %x %x %x %x\n", eax, ecx, a, b, c, d);
}

static uint
maxleaf(uint base)
{
  uint a, b, c, d;

  asm volatile("cpuid" : "=a" (a), "=b" (b), "=c" (c), "=d" (d) : "a" (base), "c" (0));
  return a;
}

void
cpuid_probe(void)
{
  uint i, max = maxleaf(0), extmax = maxleaf(0x80000000);

  for (i = 0; i <= max && i < 0x20; i++)
    leaf(i, 0);
  for (i = 1; i < 5; i++)
    leaf(4, i);
  leaf(0x40000000, 0);
  leaf(0x40000001, 0);
  for (i = 0x80000000; i <= extmax && i < 0x80000020; i++)
    leaf(i, 0);
  leaf(max + 1, 0);
  leaf(extmax + 1, 0);
}
