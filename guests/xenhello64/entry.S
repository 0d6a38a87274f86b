// xenhello64's assembly: the Xen ELF notes of a 64-bit kernel, the entry point, the
// hypercall page, the ways into the kernel from the hypervisor (traps, the event
// upcall, the syscall callback), each returning with HYPERVISOR_iret, and the way
// into ring 3 and back.
//
// Every bounce frame Xen builds starts with the interrupted RCX and R11, which its
// sysret-based return clobbers (XEN-ABI64.md 1.5): RCX, R11, [error code,] RIP, CS,
// RFLAGS, RSP, SS. A handler pops RCX and R11 first, as Linux's xen_pv_trap does, and
// what remains is an iretq frame. To return, it pushes HYPERVISOR_iret's flags word on
// that frame and jumps to the iret entry of the hypercall page, which pushes RCX, R11
// and RAX (XEN-ABI64.md 1.3).

#include "xen.h"

// One "Xen" ELF note (elfnote.h): name "Xen", a type, a string or a value.
#define NOTE(type, desc)           \
  .pushsection .note.Xen, "a";     \
  .balign 4;                       \
  .long 4, 3f - 2f, type;          \
  .asciz "Xen";                    \
  .balign 4;                       \
2: desc;                           \
3: .balign 4;                      \
  .popsection

NOTE(XEN_ELFNOTE_GUEST_OS, .asciz "xenhello64")
NOTE(XEN_ELFNOTE_XEN_VERSION, .asciz "xen-3.0")
NOTE(XEN_ELFNOTE_LOADER, .asciz "generic")
NOTE(XEN_ELFNOTE_VIRT_BASE, .quad VIRT_BASE)
NOTE(XEN_ELFNOTE_PADDR_OFFSET, .quad 0)
NOTE(XEN_ELFNOTE_ENTRY, .quad _start)
NOTE(XEN_ELFNOTE_HYPERCALL_PAGE, .quad hypercall_page)
NOTE(XEN_ELFNOTE_HV_START_LOW, .quad HV_START_LOW)
NOTE(XEN_ELFNOTE_PAE_MODE, .asciz "yes")
NOTE(XEN_ELFNOTE_FEATURES, .asciz "!writable_page_tables|pae_pgdir_above_4gb")

#define IRET (hypercall_page + __HYPERVISOR_iret * 32)

// The registers C code may clobber, but RAX for handlers that return a value
// elsewhere: pushed after RCX and R11 are popped from the frame, so that the
// interrupted code gets all of them back.
.macro SAVE_SCRATCH
  pushq %rax
  pushq %rcx
  pushq %rdx
  pushq %rsi
  pushq %rdi
  pushq %r8
  pushq %r9
  pushq %r10
  pushq %r11
.endm

.macro RESTORE_SCRATCH
  popq %r11
  popq %r10
  popq %r9
  popq %r8
  popq %rdi
  popq %rsi
  popq %rdx
  popq %rcx
  popq %rax
.endm

  .section .text.entry, "ax"
  .globl _start
_start:
  // RSI holds start_info's address; the builder's boot stack is one page.
  movq $stack_top, %rsp
  movq %rsi, %rdi
  call main
1:
  jmp 1b

  .text
// Bounce frames are 16-byte aligned: after popping RCX and R11 and saving nine
// registers, a frame without an error code leaves RSP aligned for a call; one with
// an error code needs 8 bytes more.
  .globl int3_entry
int3_entry:
  popq %rcx
  popq %r11
  SAVE_SCRATCH
  call int3_trap
  RESTORE_SCRATCH
  pushq $0
  jmp IRET

  .globl page_fault_entry
page_fault_entry:
  popq %rcx
  popq %r11
  SAVE_SCRATCH
  movq 72(%rsp), %rdi           // the error code
  subq $8, %rsp
  call page_fault
  addq $8, %rsp
  RESTORE_SCRATCH
  movq $0, (%rsp)               // the error code's slot takes the flags word
  jmp IRET

  .globl event_entry
event_entry:
  popq %rcx
  popq %r11
  SAVE_SCRATCH
  call event_upcall
  RESTORE_SCRATCH
  pushq $0
  jmp IRET

  .globl failsafe_entry
failsafe_entry:
  call failsafe
1:
  jmp 1b

// A `syscall` in user mode: Xen switches to kernel mode (kernel L4, kernel GS
// base) and bounces here on the stack given by stack_switch, with the user's RIP
// and RFLAGS in the frame's RCX and R11 slots and events masked
// (CALLBACKF_mask_events). RAX holds the call's number, RDI and RSI its arguments.
// The result goes back in RAX, with sysret semantics (VGCF_in_syscall).
  .globl syscall_entry
syscall_entry:
  popq %rcx
  popq %r11
  pushq %rcx
  pushq %rdx
  pushq %rsi
  pushq %rdi
  pushq %r8
  pushq %r9
  pushq %r10
  pushq %r11
  subq $8, %rsp
  movq %rsi, %rdx
  movq %rdi, %rsi
  movq %rax, %rdi
  call user_syscall             // user_syscall(number, arg0, arg1)
  addq $8, %rsp
  popq %r11
  popq %r10
  popq %r9
  popq %r8
  popq %rdi
  popq %rsi
  popq %rdx
  popq %rcx
  pushq $VGCF_in_syscall
  jmp IRET

// long enter_user(u64 rip, u64 rsp): run ring 3 code until it exits (leave_user),
// and return its status. The kernel's callee-saved registers and stack pointer are
// kept in kernel_context; HYPERVISOR_iret with a CS of RPL 3 switches Xen to user
// mode (the user L4, the user GS base) with events unmasked (RFLAGS.IF).
  .globl enter_user
enter_user:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, kernel_context(%rip)
  pushq $FLAT_USER_SS
  pushq %rsi                    // RSP
  pushq $0x200                  // RFLAGS: IF
  pushq $FLAT_USER_CS64
  pushq %rdi                    // RIP
  pushq $0                      // flags: an iret, not a sysret
  jmp IRET

// void leave_user(long status): from the syscall callback, back to enter_user's
// caller as if enter_user returned status. The callback's stack is abandoned.
  .globl leave_user
leave_user:
  movq kernel_context(%rip), %rsp
  movq %rdi, %rax
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret

  .section .hypercall, "ax"
  .globl hypercall_page
hypercall_page:
  .skip 4096

  .bss
  .balign 8
kernel_context:
  .skip 8
  .balign 16
  .skip 8192
stack_top:
