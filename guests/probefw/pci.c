// PCI configuration space through configuration mechanism #1 (PCI Local Bus 3.0,
// 3.2.2.3.2): a dword address at 0xCF8 (bit 31 enables it), the data at 0xCFC-0xCFF.
// Bus 0 is scanned; each function's header is printed, its BARs sized as a kernel
// sizes them (write all ones, read the mask back, restore), and the accesses a
// kernel makes checked: bytes and words at any offset, the address latch read back.
#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define CONFIG_ADDRESS 0xCF8
#define CONFIG_DATA    0xCFC
#define ENABLE         0x80000000

static uint
address(uint dev, uint fn, uint reg)
{
  return ENABLE | dev << 11 | fn << 8 | (reg & 0xFC);
}

static uint
readl(uint dev, uint fn, uint reg)
{
  outl(CONFIG_ADDRESS, address(dev, fn, reg));
  return inl(CONFIG_DATA);
}

static void
writel(uint dev, uint fn, uint reg, uint value)
{
  outl(CONFIG_ADDRESS, address(dev, fn, reg));
  outl(CONFIG_DATA, value);
}

// The mask a BAR (or the expansion ROM's) reads after all ones are written to it.
static uint
size_mask(uint dev, uint fn, uint reg)
{
  uint saved = readl(dev, fn, reg), mask;

  writel(dev, fn, reg, 0xFFFFFFFF);
  mask = readl(dev, fn, reg);
  writel(dev, fn, reg, saved);
  return mask;
}

static void
function(uint dev, uint fn)
{
  uchar config[256];

  for (uint reg = 0; reg < 256; reg += 4) {
    uint v = readl(dev, fn, reg);
    for (int i = 0; i < 4; i++)
      config[reg + i] = v >> (8 * i);
  }
  cprintf("pci 00:%x.%x: id %x:%x command %x status %x rev %x class %x header %x "
          "irq line %x pin %x\n", dev, fn, rd16(config), rd16(config + 2),
          rd16(config + 4), rd16(config + 6), config[8], rd32(config + 8) >> 8,
          config[14], config[0x3C], config[0x3D]);
  dump(config, 256);
  cprintf("  bar masks");
  for (uint reg = 0x10; reg <= 0x24; reg += 4)
    cprintf(" %x", size_mask(dev, fn, reg));
  cprintf(" rom %x\n", size_mask(dev, fn, 0x30));
}

// Narrow accesses and the enable bit, on the host bridge (00:00.0).
static void
accesses(void)
{
  uint id = readl(0, 0, 0);
  int narrow;

  outl(CONFIG_ADDRESS, address(0, 0, 0));
  narrow = check(inw(CONFIG_DATA + 2) == id >> 16) &
           check(inb(CONFIG_DATA + 1) == ((id >> 8) & 0xFF)) &
           check(inl(CONFIG_ADDRESS) == address(0, 0, 0));
  outl(CONFIG_ADDRESS, address(0, 0, 0) & ~ENABLE);
  uint disabled = inl(CONFIG_DATA);
  cprintf("pci: narrow reads %s, disabled reads %x, absent reads %x\n",
          verdict(narrow), disabled, readl(31, 7, 0));
}

void
probe_pci(void)
{
  for (uint dev = 0; dev < 32; dev++) {
    for (uint fn = 0; fn < 8; fn++) {
      uint id = readl(dev, fn, 0);
      if ((id & 0xFFFF) == 0xFFFF) {
        if (fn == 0)
          break;
        continue;
      }
      function(dev, fn);
      if (fn == 0 && !(readl(dev, 0, 0x0C) >> 16 & 0x80))
        break;
    }
  }
  accesses();
}
