// highhalf's address space, as xv6's memlayout.h draws it: the kernel is linked at
// KERNBASE + 1 MiB and loaded at 1 MiB; physical memory up to PHYSTOP appears at
// KERNBASE; the devices above DEVSPACE stay at their own addresses.
#ifndef HIGHHALF_MEMLAYOUT_H
#define HIGHHALF_MEMLAYOUT_H

#define KERNBASE 0x80000000
#define KERNLINK (KERNBASE + 0x100000)
#define PHYSTOP  0x01000000  // 16 MiB mapped
#define DEVSPACE 0xFE000000  // the APICs and other devices, mapped at their addresses

#include "kernbase.h"

#endif
