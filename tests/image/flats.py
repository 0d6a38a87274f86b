"""Flat Multiboot binaries for the tests, built by GNU as and `ld --oformat binary` in
tmp_path (tests/binutils.py): no ELF headers, only the Multiboot header's a.out kludge
(flag 16) to say where the kernel goes. Each field of the header can be changed.
"""

from tests.binutils import KERNEL_FLAGS, assemble, link, symbols

# A tutorial kernel: the header first, then code that pushes EAX and EBX on the loader's
# stack before it sets its own, prints them, a string from .data and a bss word that
# must read zero on COM1, and leaves through isa-debug-exit with code 5.
KERNEL = r"""
    .set FLAGS, {flags:#x}
    .text
file_start:
    .fill {pad}, 1, 0x90
header:
    .long 0x1BADB002, FLAGS, -(0x1BADB002 + FLAGS)
    .long {header_addr}, {load_addr}, {load_end}, {bss_end}, {entry}
    .globl start
start:
    push %ebx
    push %eax
    pop %ecx
    pop %edi
    mov $stack_top, %esp
    jmp main
stack_first:                    # the entry for a loader that gives no stack
    mov $stack_top, %esp
    mov %eax, %ecx
    mov %ebx, %edi
main:
    mov $greeting, %esi
    call puts
    mov %ecx, %eax
    call puthex
    mov %edi, %eax
    call puthex
    mov bss_word, %eax
    call puthex
    mov $0xF4, %dx
    mov $5, %al
    out %al, %dx
halt_here:
    cli
    hlt

puts:                           # the C string at ESI
    mov $0x3F8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  ret

puthex:                         # EAX in hex, then a newline
    mov $8, %ebx
    mov $0x3F8, %dx
1:  rol $4, %eax
    push %eax
    and $0xF, %al
    add $'0', %al
    cmp $'9', %al
    jbe 2f
    add $('a' - '9' - 1), %al
2:  out %al, %dx
    pop %eax
    dec %ebx
    jnz 1b
    mov $'\n', %al
    out %al, %dx
    ret

    .data
greeting: .asciz "flat kernel\n"
    .bss
bss_word: .long 0
    .space 256
stack_top:
"""
SCRIPT = """
SECTIONS {
  . = 0x100000;
  .text : { *(.text) }
  .data : { *(.data) }
  _load_end = .;
  .bss : { *(.bss) }
  _bss_end = .;
}
"""
FIELDS = {"flags": 0x10003, "pad": 0, "header_addr": "header", "load_addr": "file_start",
          "load_end": "_load_end", "bss_end": "_bss_end", "entry": "start"}
GUEST_CODE = 5
OUTPUT_LINES = 4  # the greeting and three hex words


def flat_kernel(tmp_path, **fields):
    """KERNEL with the header's FIELDS changed, linked to a flat binary by GNU ld."""
    return link([_object(tmp_path, fields)], tmp_path / "kernel.bin", script=SCRIPT,
                flags=(*KERNEL_FLAGS, "--oformat", "binary"))


def kernel_symbols(tmp_path, **fields) -> dict[str, int]:
    """The addresses ld gives flat_kernel's labels, as nm lists them in the same link
    written as an ELF."""
    elf = link([_object(tmp_path, fields)], tmp_path / "kernel.elf", script=SCRIPT,
               flags=KERNEL_FLAGS)
    return symbols(elf)


def _object(tmp_path, fields):
    return assemble(KERNEL.format(**{**FIELDS, **fields}), tmp_path / "kernel.o")
