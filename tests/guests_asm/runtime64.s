# The start-up of the 64-bit machine-test guests (GNU as, AT&T syntax, `as --64`).
#
# An ELF64 Multiboot kernel, as qemu-system-x86_64 -kernel boots one: its header
# carries the a.out kludge (flag 16), without which QEMU refuses an ELF64. It is
# entered in 32-bit protected mode like any Multiboot kernel, and does what a 64-bit
# kernel's entry does: identity-maps the first GiB with 2 MiB pages (4-level tables),
# sets CR4.PAE, EFER.LME and CR0.PG, and far-jumps into 64-bit code through its own
# GDT. Then, as runtime.s does: both 8259s masked, an empty IDT of 16-byte gates at
# IDT_BASE, a stack at STACK_TOP, test_main called, every recorded qword printed on
# COM1 as 16 hex digits and a newline, and isa-debug-exit written with test_main's AL.

    .set COM1, 0x3f8
    .set DEBUG_EXIT, 0xf4
    .set MB_FLAGS, 0x00010003   # page-align modules, memory information, a.out kludge
    .globl IDT_BASE, PML4, STACK_TOP
    .set IDT_BASE, 0x300000
    .set PML4, 0x301000
    .set PDPT, 0x302000
    .set PD, 0x303000
    .set STACK_TOP, 0x380000
    .set EFER, 0xC0000080

    .text
    .code32
    .align 4
multiboot_header:
    .long 0x1BADB002
    .long MB_FLAGS
    .long -(0x1BADB002 + MB_FLAGS)
    .long multiboot_header      # header_addr
    .long multiboot_header      # load_addr: the file from the header on
    .long _edata                # load_end_addr
    .long _end                  # bss_end_addr
    .long _start                # entry_addr

    .globl _start
_start:
    mov %eax, boot_eax
    mov %ebx, boot_ebx
    mov $STACK_TOP, %esp
    mov $PML4, %edi             # clear the three tables
    mov $3 * 1024, %ecx
    xor %eax, %eax
    rep stosl
    movl $PDPT + 0x7, PML4
    movl $PD + 0x7, PDPT
    mov $PD, %edi
    mov $0x87, %eax             # 2 MiB pages: present, writable, user, PS
    mov $512, %ecx
1:  mov %eax, (%edi)
    add $8, %edi
    add $0x200000, %eax
    loop 1b
    mov $PML4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax              # PAE
    mov %eax, %cr4
    mov $EFER, %ecx
    rdmsr
    or $0x100, %eax             # LME
    wrmsr
    mov %cr0, %eax
    or $0x80010000, %eax        # PG, WP
    mov %eax, %cr0
    lgdt gdt_desc
    ljmp $0x08, $long_entry

    .code64
long_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov $STACK_TOP, %rsp
    mov $0xff, %al
    out %al, $0x21
    out %al, $0xa1
    mov $IDT_BASE, %rdi
    mov $512, %rcx
    xor %rax, %rax
    rep stosq
    lidt idt_desc
    call test_main
    .globl finish
finish:                         # RAX: the exit code
    mov %rax, %rbp
    xor %rsi, %rsi
2:  cmp record_count, %rsi
    jae 3f
    mov records(,%rsi,8), %rax
    call print_hex
    mov $'\n', %al
    call putc
    inc %rsi
    jmp 2b
3:  mov %rbp, %rax
    mov $DEBUG_EXIT, %dx
    out %al, %dx
    .globl exit_failed
exit_failed:
    cli
4:  hlt
    jmp 4b

# record_pop: append the qword pushed before the call to `records`; touches no
# register and no flag (the REC macro pushes, this pops with ret $8).
    .globl record_pop
record_pop:
    push %rax
    push %rbx
    mov record_count, %rbx
    mov 24(%rsp), %rax
    mov %rax, records(,%rbx,8)
    lea 1(%rbx), %rbx
    mov %rbx, record_count
    pop %rbx
    pop %rax
    ret $8

    .globl print_hex
print_hex:                      # RAX as 16 hex digits
    push %rax
    push %rcx
    push %rdx
    mov %rax, %rdx
    mov $16, %rcx
5:  rol $4, %rdx
    mov %rdx, %rax
    and $0xf, %rax
    lea hexdigits(%rip), %r8
    movb (%r8,%rax), %al
    call putc
    loop 5b
    pop %rdx
    pop %rcx
    pop %rax
    ret

    .globl putc
putc:                           # AL to COM1, after waiting for THR empty
    push %rdx
    push %rax
    mov $COM1 + 5, %dx
6:  in %dx, %al
    test $0x20, %al
    jz 6b
    pop %rax
    mov $COM1, %dx
    out %al, %dx
    pop %rdx
    ret

    .data
    .align 16
    .globl gdt, gdt_tss
gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF    # 0x08 ring-0 code, 64-bit
    .quad 0x00CF92000000FFFF    # 0x10 ring-0 data
    .quad 0x00CFFA000000FFFF    # 0x18 ring-3 code, 32-bit (compatibility mode)
    .quad 0x00CFF2000000FFFF    # 0x20 ring-3 data
    .quad 0x00AFFA000000FFFF    # 0x28 ring-3 code, 64-bit
gdt_tss:
    .quad 0, 0                  # 0x30 a 64-bit TSS, for the scenarios that build one
    .quad 0x00CF9A000000FFFF    # 0x40 ring-0 code, 32-bit (compatibility mode)
gdt_end:
    .align 8
    .word 0, 0, 0
gdt_desc:
    .word gdt_end - gdt - 1
    .quad gdt
    .word 0, 0, 0
    .globl idt_desc
idt_desc:
    .word 0xfff
    .quad IDT_BASE
hexdigits:
    .ascii "0123456789abcdef"
    .align 8
    .globl boot_eax, boot_ebx, records, record_count
boot_eax: .quad 0
boot_ebx: .quad 0
record_count: .quad 0
records: .space 8 * 256
