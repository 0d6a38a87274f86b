"""Where QEMU's -kernel puts a kernel and where it jumps, on small kernels built here
and booted on QEMU and on pvtool side by side: segments below 1 MiB (over the option
ROM's stack and information), a higher-half kernel whose ELF entry is virtual or
physical, and an ELF whose Multiboot header sets the a.out kludge (flag 16)."""

import pytest

from tests.binutils import IMPURE, build_once
from tests.machine.harness import assert_same_as_qemu, run_native

# A kernel that needs no stack of its own and runs anywhere: it prints the MiB it runs
# in (bits 20-23 of its own address), then what it pops after a push on the loader's
# stack, then exits with code 7.
KERNEL = """
    .text
    .p2align 2
header:
    .long 0x1BADB002, {flags:#x}, -(0x1BADB002 + {flags:#x})
    .long {header_addr:#x}, {load_addr:#x}, 0, 0, {entry:#x}
    .globl _start
_start:
    call 1f
1:  pop %eax
    shr $20, %eax
    and $0xF, %eax
    add $'0', %al
    mov $0x3F8, %dx
    out %al, %dx
    push $'!'
    pop %eax
    out %al, %dx
    mov $'\\n', %al
    out %al, %dx
    mov $0xF4, %dx
    mov $7, %al
    out %al, %dx
    hlt
"""
FLAGS = 0x3  # modules page-aligned, memory information
AOUT_KLUDGE = 1 << 16
START = 0x20  # _start's offset from the header


def kernel(build, *, flags=FLAGS, header_addr=0, text=0x100000):
    source = KERNEL.format(flags=flags, header_addr=header_addr, load_addr=header_addr,
                           entry=header_addr + START)
    return build(source, runtime=False, text=text)


@pytest.mark.parametrize("text", [0x100000, 0x8000, 0x9000, 0x9500, 0x6E00, 0x0])
def test_a_kernel_runs_where_qemu_loads_it(build, text):
    run = run_native(kernel(build, text=text))
    assert run.output.endswith(b"!\n")
    assert_same_as_qemu(run)


# Linked at 0x80100000, loaded at 1 MiB (xv6's layout).
HIGHER_HALF = """
SECTIONS
{
  . = 0x80100000;
  .text : AT(0x100000) { *(.text) }
}
"""


@pytest.mark.parametrize("entry", ["_start", hex(0x100000 + START)],
                         ids=["virtual", "physical"])
def test_a_higher_half_kernels_entry_is_physical_or_made_physical(guest_builder, entry):
    source = KERNEL.format(flags=FLAGS, header_addr=0, load_addr=0, entry=0)
    guest = build_once(guest_builder.workdir, source, script=HIGHER_HALF, entry=entry,
                       flags=(*IMPURE, "--build-id=none"))
    run = run_native(guest)
    assert run.output == b"1!\n"  # at 1 MiB, paging off
    assert_same_as_qemu(run)


def test_the_aout_kludge_addresses_win_over_the_elf_program_headers(build):
    # Linked at 1 MiB, but the header says: load me at 2 MiB and enter there.
    run = run_native(kernel(build, flags=FLAGS | AOUT_KLUDGE, header_addr=0x200000))
    assert run.output == b"2!\n"
    assert_same_as_qemu(run)


INFO_POINTERS = """
    .include "macros.inc"
    .globl test_main
test_main:
    mov boot_ebx, %ebx
    REC %ebx
    REC 16(%ebx)                # cmdline
    REC 24(%ebx)                # mods_addr
    REC 48(%ebx)                # mmap_addr
    REC 64(%ebx)                # boot_loader_name
    xor %eax, %eax
    ret
"""


@pytest.mark.parametrize("text", [0x100000, 0x100010, 0x234560])
def test_the_information_lies_where_qemu_puts_it_wherever_the_kernel_is(build, text):
    # The strings go on the page after the kernel, counted from its lowest address.
    run = run_native(build(INFO_POINTERS, text=text))
    assert run.records()[0] == 0x9500
    assert_same_as_qemu(run)
