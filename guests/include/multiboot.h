// Multiboot 0.6.96 constants, shared by the header in entry.S and the check in C.
#ifndef GUESTS_MULTIBOOT_H
#define GUESTS_MULTIBOOT_H

#define MULTIBOOT_HEADER_MAGIC     0x1BADB002  // in the kernel image, first 8 KiB
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002  // in EAX when the loader jumps to us

// Header flags: bit 0 asks for page-aligned modules, bit 1 for the memory map.
// Bit 16, the a.out kludge, gives the load and entry addresses in the header: a
// 32-bit guest leaves it clear (loaders read its ELF program headers instead); a
// 64-bit one sets it, since QEMU refuses to load an ELF64 (guests/lib64/entry.S).
#define MULTIBOOT_PAGE_ALIGN  (1 << 0)
#define MULTIBOOT_MEMORY_INFO (1 << 1)
#define MULTIBOOT_AOUT_KLUDGE (1 << 16)

// Bits of multiboot_info.flags: which of its fields the loader filled in.
#define MULTIBOOT_INFO_MEMORY (1 << 0)  // mem_lower and mem_upper
#define MULTIBOOT_INFO_CMDLINE (1 << 2)  // cmdline
#define MULTIBOOT_INFO_MODS (1 << 3)  // mods_count and mods_addr

#ifndef __ASSEMBLER__
#include "types.h"

// The loader works in 32-bit protected mode: the structures' addresses are 32-bit
// physical ones, which a 32-bit guest running identity-mapped reads as pointers
// and a 64-bit guest as numbers.
#ifdef __x86_64__
#define MULTIBOOT_ADDR(type) uint
#else
#define MULTIBOOT_ADDR(type) type *
#endif

// The start of the information structure the loader passes in EBX (spec 3.3);
// the fields after these are not used by the guests.
struct multiboot_info {
  uint flags;
  uint mem_lower;  // KiB of memory from 0
  uint mem_upper;  // KiB of memory from 1 MiB
  uint boot_device;
  MULTIBOOT_ADDR(char) cmdline;  // a C string
  uint mods_count;
  MULTIBOOT_ADDR(struct multiboot_module) mods_addr;
};

// One entry of the module list: where the loader put a module, and its string.
struct multiboot_module {
  MULTIBOOT_ADDR(uchar) mod_start;
  MULTIBOOT_ADDR(uchar) mod_end;  // one past the last byte
  MULTIBOOT_ADDR(char) string;  // a C string
  uint reserved;
};
#endif

#endif
