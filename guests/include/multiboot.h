// Multiboot 0.6.96 constants, shared by the header in entry.S and the check in C.
#ifndef GUESTS_MULTIBOOT_H
#define GUESTS_MULTIBOOT_H

#define MULTIBOOT_HEADER_MAGIC     0x1BADB002  // in the kernel image, first 8 KiB
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002  // in EAX when the loader jumps to us

// Header flags: bit 0 asks for page-aligned modules, bit 1 for the memory map.
// Bit 16 (the a.out kludge) stays clear: loaders read our ELF program headers instead.
#define MULTIBOOT_PAGE_ALIGN  (1 << 0)
#define MULTIBOOT_MEMORY_INFO (1 << 1)

// Bits of multiboot_info.flags: which of its fields the loader filled in.
#define MULTIBOOT_INFO_MEMORY (1 << 0)  // mem_lower and mem_upper
#define MULTIBOOT_INFO_CMDLINE (1 << 2)  // cmdline
#define MULTIBOOT_INFO_MODS (1 << 3)  // mods_count and mods_addr

#ifndef __ASSEMBLER__
#include "types.h"

// The start of the information structure the loader passes in EBX (spec 3.3);
// the fields after these are not used by the guests.
struct multiboot_info {
  uint flags;
  uint mem_lower;  // KiB of memory from 0
  uint mem_upper;  // KiB of memory from 1 MiB
  uint boot_device;
  char *cmdline;  // a C string
  uint mods_count;
  struct multiboot_module *mods_addr;
};

// One entry of the module list: where the loader put a module, and its string.
struct multiboot_module {
  uchar *mod_start;
  uchar *mod_end;  // one past the last byte
  char *string;  // a C string
  uint reserved;
};
#endif

#endif
