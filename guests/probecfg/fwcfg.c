// The two ways to read fw_cfg: byte by byte through the data port after selecting an
// item, and by DMA, where the device reads a descriptor from guest memory, does what
// its control word says and writes the outcome back into it.
#include "types.h"
#include "x86.h"
#include "fwcfg.h"

// The DMA descriptor (fw_cfg.txt, "FWCfgDmaAccess"): every field big-endian.
struct dma_access {
  uint control;
  uint length;
  uint address_high;
  uint address_low;
};

uint
be32(uint x)
{
  return x >> 24 | (x >> 8 & 0xFF00) | (x << 8 & 0xFF0000) | x << 24;
}

void
cfg_select(ushort key)
{
  outw(FW_CFG_SELECTOR, key);
}

void
cfg_read(void *buf, uint len)
{
  uchar *p = buf;

  while (len--)
    *p++ = inb(FW_CFG_DATA);
}

// Run one DMA transfer of LEN bytes into BUF; return the control word the device
// left behind (0: done, FW_CFG_DMA_ERROR: failed).
uint
cfg_dma(uint control, void *buf, uint len)
{
  static struct dma_access access __attribute__((aligned(16)));

  access.control = be32(control);
  access.length = be32(len);
  access.address_high = 0;
  access.address_low = be32((uint)buf);
  // The high half first; writing the low half starts the transfer.
  outl(FW_CFG_DMA, 0);
  outl(FW_CFG_DMA + 4, be32((uint)&access));
  return be32(*(volatile uint *)&access.control);
}
