// xenhello's assembly: the Xen ELF notes, the entry point, the hypercall page, and
// the two ways into the kernel from the hypervisor (a trap and the event upcall),
// each returning with HYPERVISOR_iret.

#include "xen.h"

// One "Xen" ELF note (public/elfnote.h): name "Xen", a type, a string or a u32.
#define NOTE(type, desc)           \
  .pushsection .note.Xen, "a";     \
  .balign 4;                       \
  .long 4, 3f - 2f, type;          \
  .asciz "Xen";                    \
  .balign 4;                       \
2: desc;                           \
3: .balign 4;                      \
  .popsection

NOTE(XEN_ELFNOTE_GUEST_OS, .asciz "xenhello")
NOTE(XEN_ELFNOTE_XEN_VERSION, .asciz "xen-3.0")
NOTE(XEN_ELFNOTE_LOADER, .asciz "generic")
NOTE(XEN_ELFNOTE_VIRT_BASE, .long 0xC0000000)
NOTE(XEN_ELFNOTE_ENTRY, .long _start)
NOTE(XEN_ELFNOTE_HYPERCALL_PAGE, .long hypercall_page)
NOTE(XEN_ELFNOTE_PAE_MODE, .asciz "yes")
NOTE(XEN_ELFNOTE_FEATURES, .asciz "writable_page_tables|pae_pgdir_above_4gb")

  .section .text.entry, "ax"
  .globl _start
_start:
  // ESI holds start_info's address; the builder's boot stack is one page.
  mov $stack_top, %esp
  push %esi
  call main
1:
  jmp 1b

// Frames from the hypervisor (XEN-ABI.md): EIP, CS, EFLAGS on the ring-1 stack.
// HYPERVISOR_iret pops {EAX, EIP, CS, EFLAGS}; its hypercall-page entry pushes EAX.
  .text
  .globl int3_entry
int3_entry:
  pusha
  call int3_trap
  popa
  jmp hypercall_page + __HYPERVISOR_iret * 32

  .globl event_entry
event_entry:
  pusha
  call event_upcall
  popa
  jmp hypercall_page + __HYPERVISOR_iret * 32

  .globl failsafe_entry
failsafe_entry:
  call failsafe
1:
  jmp 1b

  .section .hypercall, "ax"
  .globl hypercall_page
hypercall_page:
  .skip 4096

  .bss
  .balign 16
  .skip 8192
stack_top:
