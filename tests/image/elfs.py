"""Tiny real kernels for the image tests, built with the GNU toolchain in tmp_path.

Each is a Multiboot ELF the way guests/ builds them (gcc -m32 for the assembly,
ld -m elf_i386 with a linker script), small enough to reason about byte by byte. The
default one also runs on QEMU: it prints the byte at `greeting` on COM1, calls `hook`
(a bare ret the writer tests redirect into an added section) and exits through
isa-debug-exit with code 3.
"""

import struct
import subprocess
from pathlib import Path

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

# Linked at 0xC0100000 and loaded at 1 MiB, like a classic higher-half kernel.
HIGHER_HALF_LD = """
ENTRY(_start)
SECTIONS {
    . = 0xC0100000;
    .text : AT(ADDR(.text) - 0xC0000000) { *(.text) }
    .data ALIGN(4096) : AT(ADDR(.data) - 0xC0000000) { *(.data) }
    .bss : AT(ADDR(.bss) - 0xC0000000) { *(.bss) }
}
"""

LD_FLAGS = ("-m", "elf_i386", "-nostdlib", "--build-id=none", "-z", "noexecstack")


def _run(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr}"


def assemble(directory: Path, asm: str, name: str = "kernel") -> Path:
    require_tool("gcc")
    source = directory / f"{name}.S"
    source.write_text(asm)
    _run(["gcc", "-m32", "-c", source.name, "-o", f"{name}.o"], directory)
    return directory / f"{name}.o"


def build_kernel(directory: Path, asm: str = KERNEL_ASM, *, script: str | None = IDENTITY_LD,
                 ld_args: tuple[str, ...] = (), name: str = "kernel") -> Path:
    """Assemble asm and link it with the linker script (or none, for ld's default)."""
    obj = assemble(directory, asm, name)
    require_tool("ld")
    command = ["ld", *LD_FLAGS, *ld_args, "-o", f"{name}.elf", obj.name]
    if script is not None:
        (directory / f"{name}.ld").write_text(script)
        command[1:1] = ["-T", f"{name}.ld"]
    _run(command, directory)
    return directory / f"{name}.elf"


def build_elf64(directory: Path) -> Path:
    """An x86-64 executable from plain gcc (no libc needed: it only spins)."""
    require_tool("gcc")
    (directory / "spin.c").write_text("void _start(void) { for (;;) ; }\n")
    _run(["gcc", "-nostdlib", "-static", "-o", "spin64", "spin.c"], directory)
    return directory / "spin64"


def poke(path: Path, offset: int, fmt: str, *values: int) -> None:
    """Overwrite bytes of a file in place with struct.pack(fmt, *values)."""
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, *values)
    path.write_bytes(bytes(data))


def tool_output(*command: str) -> tuple[str, str]:
    """stdout and stderr of a binutils oracle (readelf, objdump); it must succeed."""
    require_tool(command[0])
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr}"
    return done.stdout, done.stderr
