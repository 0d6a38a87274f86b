// probecfg: QEMU's firmware configuration device (fw_cfg), as a kernel reaches it.
// docs/specs/fw_cfg.txt in QEMU's source describes the interface: a 16-bit selector
// port, an 8-bit data port, and a DMA address register written big-endian.
#ifndef PROBECFG_FWCFG_H
#define PROBECFG_FWCFG_H

#include "types.h"

#define FW_CFG_SELECTOR 0x510
#define FW_CFG_DATA     0x511
#define FW_CFG_DMA      0x514

// Selectors (QEMU's include/standard-headers/linux/qemu_fw_cfg.h).
#define FW_CFG_SIGNATURE   0x00
#define FW_CFG_ID          0x01
#define FW_CFG_KERNEL_SIZE 0x08
#define FW_CFG_INITRD_SIZE 0x0b
#define FW_CFG_KERNEL_DATA 0x11
#define FW_CFG_INITRD_DATA 0x12
#define FW_CFG_FILE_DIR    0x19

// The DMA control word's bits.
#define FW_CFG_DMA_ERROR  0x01
#define FW_CFG_DMA_READ   0x02
#define FW_CFG_DMA_SKIP   0x04
#define FW_CFG_DMA_SELECT 0x08
#define FW_CFG_DMA_WRITE  0x10

// One directory entry, as the device sends it (numbers big-endian).
struct fw_cfg_file {
  uint size;
  ushort select;
  ushort reserved;
  char name[56];
};

// fwcfg.c
uint be32(uint x);
void cfg_select(ushort key);
void cfg_read(void *buf, uint len);
uint cfg_dma(uint control, void *buf, uint len);

// show.c
void hexbytes(const uchar *p, uint n);
void hexword(uint x);
#define FNV_START 2166136261u
uint digest(uint h, const uchar *p, uint n);

#endif
