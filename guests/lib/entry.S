# The entry point of every PC guest. A Multiboot loader (GRUB, QEMU -kernel, pvtool's
# native mode) loads the ELF at 1 MiB and jumps to _start in 32-bit protected mode
# with paging off, EAX = MULTIBOOT_BOOTLOADER_MAGIC and EBX = the physical address of
# the Multiboot information structure. It gives us no stack (Multiboot spec 3.2).
# This stack stays the boot processor's: main runs on it (and minikern's scheduler).

#include "multiboot.h"

#define BOOTSTACKSIZE 8192

# The loader looks for this header, 4-byte aligned, in the image's first 8 KiB;
# the linker script puts it first.
.section .multiboot, "a"
.p2align 2
multiboot_header:
  .long MULTIBOOT_HEADER_MAGIC
  .long MULTIBOOT_PAGE_ALIGN | MULTIBOOT_MEMORY_INFO
  .long -(MULTIBOOT_HEADER_MAGIC + (MULTIBOOT_PAGE_ALIGN | MULTIBOOT_MEMORY_INFO))

.text
.globl _start
_start:
  movl $(bootstack + BOOTSTACKSIZE), %esp
  cld                           # C code assumes DF is clear (SysV ABI)

  # main(magic, info): the C code checks what the loader handed over.
  pushl %ebx
  pushl %eax
  call main

  # main ends by leaving through isa-debug-exit; without that device, or should main
  # ever return, stop rather than run off the end.
spin:
  cli
  hlt
  jmp spin

.bss
.p2align 4
bootstack:
  .space BOOTSTACKSIZE
