# The entry of a higher-half kernel (highhalf, hhpse), as xv6's entry.S does it; an
# entry.S includes it after memlayout.h, which defines KERNBASE. The loader jumps to
# the physical address of `entry` with paging off; the kernel is linked at KERNBASE +
# its physical address. Turn on 4 MiB pages, map the first 4 MiB both at 0 and at
# KERNBASE (the kernel's entrypgdir), switch paging on, take a stack in the high half
# and jump to main there.

#include "multiboot.h"
#include "mmu.h"

#define KSTACKSIZE 8192

#define MB_FLAGS (MULTIBOOT_PAGE_ALIGN | MULTIBOOT_MEMORY_INFO)

.section .multiboot, "a"
.p2align 2
  .long MULTIBOOT_HEADER_MAGIC, MB_FLAGS, -(MULTIBOOT_HEADER_MAGIC + MB_FLAGS)

# The ELF entry point is the physical address: paging is off when the loader jumps.
.globl _start
_start = V2P_WO(entry)

.text
.globl entry
entry:
  movl %cr4, %ecx
  orl $CR4_PSE, %ecx
  movl %ecx, %cr4
  movl $(V2P_WO(entrypgdir)), %ecx
  movl %ecx, %cr3
  movl %cr0, %ecx
  orl $(CR0_PG | CR0_WP), %ecx
  movl %ecx, %cr0

  movl $(stack + KSTACKSIZE), %esp
  cld
  pushl %ebx                    # main(magic, info), as the loader handed them over
  pushl %eax
  pushl $0                      # main never returns (it leaves by debug_exit)
  mov $main, %ecx               # an absolute jump: into the high half
  jmp *%ecx

.comm stack, KSTACKSIZE
