"""Tiny real kernels for the image tests, built with the GNU toolchain in tmp_path.

Each is a Multiboot ELF the way guests/ builds them (GNU as, then ld with a linker
script: tests/binutils.py), for x86-32 or x86-64, small enough to reason about byte by
byte. The default 32-bit one also runs on QEMU: it prints the byte at `greeting` on
COM1, calls `hook` (a bare ret the writer tests redirect into an added section) and
exits through isa-debug-exit with code 3.
"""

import struct
from pathlib import Path

from tests import binutils
from tests.oracles import require_tool

KERNEL_ASM = r"""
    .text
    .align 4
multiboot_header:
    .long 0x1BADB002
    .long 0x00000003
    .long -(0x1BADB002 + 0x00000003)

    .globl _start
    .type _start, @function
_start:
    mov $stack_top, %esp
    call kmain
    .globl hook_call
hook_call:
    call hook
    mov $0xf4, %dx
    mov $3, %al
    out %al, %dx
1:  hlt
    jmp 1b
    .size _start, . - _start

    .globl kmain
    .type kmain, @function
kmain:
    mov $0x3f8, %dx
    movb greeting, %al
    out %al, %dx
    incl counter
    ret
    .size kmain, . - kmain

    .globl hook
    .type hook, @function
hook:
    ret
    .size hook, . - hook

    .data
    .globl counter
    .type counter, @object
counter:
    .long 42
    .size counter, 4
    .globl greeting
    .type greeting, @object
greeting:
    .byte 'A'
    .size greeting, 1

    .bss
    .align 16
    .globl stack
    .type stack, @object
stack:
    .space 4096
    .size stack, 4096
stack_top:
"""
# The same kernel for x86-64, where the stack pointer is 64 bits wide (its address a
# sign-extended 32-bit immediate, so the kernel may be linked in the top 2 GiB).
KERNEL64_ASM = KERNEL_ASM.replace("%esp", "%rsp")

# Linked at 1 MiB, physical = virtual, ELF headers not loaded (as guests/*/kernel.ld).
IDENTITY_LD = """
ENTRY(_start)
SECTIONS {
    . = 0x100000;
    .text : { *(.text) }
    .data ALIGN(4096) : { *(.data) }
    .bss : { *(.bss) }
}
"""


def higher_half_ld(base: int) -> str:
    """Linked at BASE + 1 MiB and loaded at 1 MiB."""
    return f"""
ENTRY(_start)
SECTIONS {{
    . = {base + 0x100000:#x};
    .text : AT(ADDR(.text) - {base:#x}) {{ *(.text) }}
    .data ALIGN(4096) : AT(ADDR(.data) - {base:#x}) {{ *(.data) }}
    .bss : AT(ADDR(.bss) - {base:#x}) {{ *(.bss) }}
}}
"""


# Like a classic 32-bit higher-half kernel, and like Linux on x86-64
# (__START_KERNEL_map, the top 2 GiB).
HIGHER_HALF_LD = higher_half_ld(0xC0000000)
HIGHER_HALF64_LD = higher_half_ld(0xFFFFFFFF80000000)

KERNELS = {32: KERNEL_ASM, 64: KERNEL64_ASM}  # each width's default kernel

# An x86-64 executable that only spins.
SPIN64_ASM = """
    .globl _start
_start:
    jmp _start
"""


def assemble(directory: Path, asm: str, name: str = "kernel", bits: int = 32) -> Path:
    """The relocatable object of asm."""
    return binutils.assemble(asm, directory / f"{name}.o", bits=bits)


def build_kernel(directory: Path, asm: str | None = None, *,
                 script: str | None = IDENTITY_LD, ld_args: tuple[str, ...] = (),
                 name: str = "kernel", bits: int = 32) -> Path:
    """Assemble asm (by default the width's kernel) and link it with the linker script
    (or none, for ld's default)."""
    flags = (*binutils.KERNEL_FLAGS, *ld_args)
    source = KERNELS[bits] if asm is None else asm
    return binutils.build(directory, source, name=name, bits=bits, script=script,
                          flags=flags).elf


def build_elf64(directory: Path) -> Path:
    """An x86-64 executable (as --64, ld -m elf_x86_64) with a GNU build-id note, as
    gcc links one."""
    return binutils.build(directory, SPIN64_ASM, name="spin64", bits=64,
                          flags=("--build-id=sha1",)).elf


def poke(path: Path, offset: int, fmt: str, *values: int) -> None:
    """Overwrite bytes of a file in place with struct.pack(fmt, *values)."""
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, *values)
    path.write_bytes(bytes(data))


def tool_output(*command: str) -> tuple[str, str]:
    """stdout and stderr of a binutils oracle (readelf, objdump); it must succeed."""
    done = binutils.run_tool(require_tool(command[0]), *command[1:])
    return done.stdout, done.stderr
