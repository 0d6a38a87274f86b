# The entry of every 64-bit PC guest, in two halves, as a 64-bit Linux is entered
# by its boot loader.
#
# start32, the Multiboot entry: a Multiboot loader (GRUB, qemu-system-x86_64 -kernel)
# jumps here in 32-bit protected mode with paging off, EAX = the Multiboot magic and
# EBX = the physical address of the information structure. It runs at its physical
# address (section .boot32, linked at the load address), builds boot page tables,
# enters long mode and jumps to start64.
#
# start64, the 64-bit entry, is the image's ELF entry point (e_entry), as vmlinux's
# startup_64 is: a loader or hypervisor that starts the kernel in long mode itself
# (pvtool's PV entry for the xen64 patch set) jumps here. Its contract:
#   - long mode, CPL 0, interrupts off, a GDT with a 64-bit code segment in CS;
#   - paging on, with the low RAM identity-mapped (at least the first 8 MiB) and the
#     kernel's link range mapped: KERNBASE + p -> physical p for the same range;
#   - RDI = the Multiboot magic (0x2BADB002), RSI = the physical address of the
#     Multiboot information structure;
#   - no stack: start64 takes its own.
# The kernel builds its own page tables and GDT (vm.c, gdt.c) before it needs more.

#include "multiboot.h"
#include "mmu.h"
#include "kernbase.h"

#define BOOTSTACKSIZE 8192
#define MB_FLAGS (MULTIBOOT_PAGE_ALIGN | MULTIBOOT_MEMORY_INFO | MULTIBOOT_AOUT_KLUDGE)

# The boot tables map the first GiB twice, with 2 MiB pages: at 0 (identity) and
# at KERNBASE. One page directory serves both.
#define PML4_KERNEL  511  // KERNBASE's PML4 slot
#define PDPT_KERNEL  510  // and its slot in that PDPT
#define BOOTPAGE     (PTE_P | PTE_W)
#define HUGEPAGE     (PTE_P | PTE_W | PTE_PS)
#define PHYS(sym)    ((sym) - KERNBASE)

# The loader reads this header, 4-byte aligned, in the image's first 8 KiB (the
# linker script puts it first). Its addresses are physical: the image is a copy of
# memory from load_addr to load_end_addr, zeros to bss_end_addr after it.
.section .multiboot, "a"
.p2align 2
mb_header:
  .long MULTIBOOT_HEADER_MAGIC
  .long MB_FLAGS
  .long -(MULTIBOOT_HEADER_MAGIC + MB_FLAGS)
  .long mb_header               # header_addr
  .long mb_header               # load_addr: the image begins with this header
  .long PHYS(edata)             # load_end_addr (kernel.ld)
  .long PHYS(end)               # bss_end_addr (kernel.ld)
  .long start32                 # entry_addr

# The linker script checks it links at the same KERNBASE as this file assumes.
.globl kernbase_assumed
.set kernbase_assumed, KERNBASE

.section .boot32, "ax"
.code32
.globl start32
start32:
  cli
  cld
  movl %eax, %edi               # the magic and the information structure's
  movl %ebx, %esi               # address, in start64's argument registers

  # The tables live in .bss. A loader that follows the header zeroes it, but one
  # that loads the ELF need not: clear them, then link them.
  # There is no stack yet: EDX keeps EDI.
  movl $PHYS(boot_pml4), %ebp
  movl %edi, %edx
  movl %ebp, %edi
  movl $(4 * PGSIZE / 4), %ecx
  xorl %eax, %eax
  rep stosl
  movl %edx, %edi

  leal (PGSIZE + BOOTPAGE)(%ebp), %eax                 # the low PDPT
  movl %eax, (%ebp)
  leal (2 * PGSIZE + BOOTPAGE)(%ebp), %eax             # the kernel's PDPT
  movl %eax, (8 * PML4_KERNEL)(%ebp)
  leal (3 * PGSIZE + BOOTPAGE)(%ebp), %eax             # the page directory
  movl %eax, PGSIZE(%ebp)
  movl %eax, (2 * PGSIZE + 8 * PDPT_KERNEL)(%ebp)

  # 512 entries of 2 MiB: the first GiB.
  leal (3 * PGSIZE)(%ebp), %ebx
  movl $HUGEPAGE, %eax
  xorl %ecx, %ecx
1:
  movl %eax, (%ebx, %ecx, 8)
  addl $0x200000, %eax
  incl %ecx
  cmpl $NPTENTRIES, %ecx
  jne 1b

  # Long mode: PAE on, the tables in CR3, EFER.LME, then paging, which activates it.
  movl %cr4, %eax
  orl $CR4_PAE, %eax
  movl %eax, %cr4
  movl %ebp, %cr3
  movl $MSR_EFER, %ecx
  rdmsr
  orl $EFER_LME, %eax
  wrmsr
  movl %cr0, %eax
  orl $(CR0_PG | CR0_PE), %eax
  movl %eax, %cr0

  # Compatibility mode until CS is a 64-bit segment: a far jump loads it.
  lgdt boot_gdtdesc
  ljmp $8, $long64

.code64
long64:
  movl $16, %eax
  movl %eax, %ds
  movl %eax, %es
  movl %eax, %ss
  movabsq $start64, %rax        # from the identity map to the kernel's link range
  jmp *%rax

# A null descriptor, 64-bit ring 0 code (L set) and data; the accessed bits are set
# already, so loading them writes nothing.
.p2align 3
boot_gdt:
  .quad 0
  .quad 0x00AF9B000000FFFF
  .quad 0x00CF93000000FFFF
boot_gdtdesc:
  .word boot_gdtdesc - boot_gdt - 1
  .long boot_gdt

.text
.globl start64
start64:
  movq $(bootstack + BOOTSTACKSIZE), %rsp
  xorl %ebp, %ebp               # the end of the frame-pointer chain
  cld                           # C code assumes DF is clear (SysV ABI)
  call main                     # main(magic, info)

  # main leaves through isa-debug-exit; should it ever return, stop.
spin:
  cli
  hlt
  jmp spin

.bss
.p2align 12
boot_pml4:                      # then the low PDPT, the kernel's PDPT, the directory
  .space 4 * PGSIZE
.p2align 4
bootstack:
  .space BOOTSTACKSIZE
