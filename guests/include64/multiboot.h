// Multiboot (version 0.6.96) as a 64-bit kernel sees it. The loader works in 32-bit
// protected mode: the information structure holds 32-bit physical addresses, never
// pointers, which is why it is not guests/include/multiboot.h's.
#ifndef GUESTS_MULTIBOOT_H
#define GUESTS_MULTIBOOT_H

#define MULTIBOOT_HEADER_MAGIC     0x1BADB002  // in the kernel image, first 8 KiB
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002  // in EAX when the loader jumps to us

// Header flags (spec 3.1.2).
#define MULTIBOOT_PAGE_ALIGN  (1 << 0)
#define MULTIBOOT_MEMORY_INFO (1 << 1)
// The header's address fields say where to load the image and where to enter it:
// the "a.out kludge", which a loader that cannot read the ELF (QEMU refuses ELF64)
// follows instead.
#define MULTIBOOT_AOUT_KLUDGE (1 << 16)

// Information structure flags (spec 3.3).
#define MULTIBOOT_INFO_MEMORY  (1 << 0)  // mem_lower and mem_upper
#define MULTIBOOT_INFO_CMDLINE (1 << 2)  // cmdline

#ifndef __ASSEMBLER__
#include "types.h"

// The start of the information structure; the fields after these are not used.
struct multiboot_info {
  uint flags;
  uint mem_lower;  // KiB of memory from 0
  uint mem_upper;  // KiB of memory from 1 MiB
  uint boot_device;
  uint cmdline;    // physical address of a C string
};
#endif

#endif
