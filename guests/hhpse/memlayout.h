// hhpse's address space: the kernel is linked at KERNBASE + 1 MiB and loaded at
// 1 MiB; physical memory up to PHYSTOP appears at KERNBASE.
#ifndef HHPSE_MEMLAYOUT_H
#define HHPSE_MEMLAYOUT_H

#define KERNBASE 0xC0000000
#define PHYSTOP  0x00800000  // 8 MiB mapped, in 4 KiB pages once main has its tables

#include "kernbase.h"

#endif
