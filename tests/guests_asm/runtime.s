# The start-up every machine-test guest shares (GNU as, AT&T syntax, 32-bit).
#
# A guest is this file linked with one scenario that defines `test_main`. The runtime
# does what a small kernel's entry does: its own flat GDT, both 8259s masked (QEMU's
# BIOS leaves the timer unmasked), an empty IDT at IDT_BASE (every gate not present),
# a stack at STACK_TOP. Then it calls test_main, prints every recorded dword as 8 hex
# digits and a newline on COM1, and exits through isa-debug-exit with test_main's EAX.
# The records are both printed (so QEMU's output can be compared byte for byte) and
# kept in memory at `records` (so a test can read them straight out of guest RAM).

    .set COM1, 0x3f8
    .set DEBUG_EXIT, 0xf4
    .globl IDT_BASE, PAGE_DIR, PAGE_TABLE, STACK_TOP
    .set IDT_BASE, 0x300000
    .set PAGE_DIR, 0x302000
    .set PAGE_TABLE, 0x303000
    .set STACK_TOP, 0x380000

    .text
    .align 4
multiboot_header:
    .long 0x1BADB002            # magic
    .long 0x00000003            # page-align modules, memory information
    .long -(0x1BADB002 + 0x00000003)

    .globl _start
_start:
    mov %eax, boot_eax          # the state the loader left, before touching it
    mov %ebx, boot_ebx
    mov %cr0, %eax
    mov %eax, boot_cr0
    mov %cs, boot_cs
    mov %ds, boot_ds
    mov %ss, boot_ss
    mov %esp, boot_esp          # Multiboot leaves ESP undefined: no push before this
    mov $STACK_TOP, %esp
    pushfl
    popl boot_eflags
    lgdt gdt_desc
    ljmp $0x08, $1f
1:  mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov $0xff, %al
    out %al, $0x21
    out %al, $0xa1
    mov $IDT_BASE, %edi
    mov $512, %ecx
    xor %eax, %eax
    rep stosl
    lidt idt_desc
    call test_main
    .globl finish
finish:                         # EAX: the exit code
    mov %eax, %ebp
    xor %esi, %esi
2:  cmp record_count, %esi
    jae 3f
    mov records(,%esi,4), %eax
    call print_hex
    mov $'\n', %al
    call putc
    inc %esi
    jmp 2b
3:  mov %ebp, %eax
    mov $DEBUG_EXIT, %dx
    out %al, %dx
    .globl exit_failed
exit_failed:                    # only reached if the debug exit did not stop the run
    cli
4:  hlt
    jmp 4b

# record_pop: append the dword pushed before the call to `records`; touches no
# register and no flag (the REC macro pushes, this pops with ret $4).
    .globl record_pop
record_pop:
    push %eax
    push %ebx
    mov record_count, %ebx
    mov 12(%esp), %eax
    mov %eax, records(,%ebx,4)
    lea 1(%ebx), %ebx
    mov %ebx, record_count
    pop %ebx
    pop %eax
    ret $4

    .globl print_hex
print_hex:                      # EAX as 8 hex digits
    pusha
    mov %eax, %edx
    mov $8, %ecx
5:  rol $4, %edx
    mov %edx, %eax
    and $0xf, %eax
    movb hexdigits(%eax), %al
    call putc
    loop 5b
    popa
    ret

    .globl putc
putc:                           # AL to COM1, after waiting for THR empty
    push %edx
    push %eax
    mov $COM1 + 5, %dx
6:  in %dx, %al
    test $0x20, %al
    jz 6b
    pop %eax
    mov $COM1, %dx
    out %al, %dx
    pop %edx
    ret

# paging_on: identity-map the first 4 MiB with 4 KiB pages (present, writable,
# supervisor) and turn on CR0.PG|WP. Scenarios punch holes with UNMAP.
    .globl paging_on
paging_on:
    pusha
    mov $PAGE_TABLE, %edi
    mov $0x3, %eax
    mov $1024, %ecx
7:  mov %eax, (%edi)
    add $4, %edi
    add $0x1000, %eax
    loop 7b
    mov $PAGE_DIR, %edi
    xor %eax, %eax
    mov $1024, %ecx
    rep stosl
    movl $PAGE_TABLE + 0x3, PAGE_DIR
    mov $PAGE_DIR, %eax
    mov %eax, %cr3
    mov %cr0, %eax
    or $0x80010000, %eax
    mov %eax, %cr0
    popa
    ret

    .data
    .align 8
    .globl gdt
gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF    # 0x08 ring-0 code
    .quad 0x00CF92000000FFFF    # 0x10 ring-0 data
    .quad 0x00CFBA000000FFFF    # 0x18 ring-1 code
    .quad 0x00CFB2000000FFFF    # 0x20 ring-1 data
    .quad 0x00CFFA000000FFFF    # 0x28 ring-3 code
    .quad 0x00CFF2000000FFFF    # 0x30 ring-3 data
    .globl gdt_tss
gdt_tss:
    .quad 0                     # 0x38 a TSS, for the scenarios that build one
gdt_end:
    .align 4
    .word 0
gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt
    .word 0
    .globl idt_desc
idt_desc:
    .word 0x7ff
    .long IDT_BASE
hexdigits:
    .ascii "0123456789abcdef"
    .align 4
    .globl boot_eax, boot_ebx, boot_eflags, boot_cr0, boot_cs, boot_ds, boot_ss
    .globl boot_esp, records, record_count
boot_eax: .long 0
boot_ebx: .long 0
boot_eflags: .long 0
boot_cr0: .long 0
boot_cs: .long 0
boot_ds: .long 0
boot_ss: .long 0
boot_esp: .long 0
record_count: .long 0
records: .space 4 * 64
