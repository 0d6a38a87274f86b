"""`pvtool run --native` on an ELF64 Multiboot kernel: it boots on the PC of
qemu-system-x86_64 -kernel and prints its bytes and ends with its status; an ELF64
without the a.out kludge is refused as QEMU refuses it, in one line. `--pc x86_64`
boots a 32-bit kernel on that PC too (one that enters long mode itself needs it)."""

import json
import subprocess
from functools import partial

import pytest

from pvtool.run import PCS
from tests import cli
from tests.binutils import build
from tests.guests_asm.build import GuestBuilder
from tests.machine.test_fast_entry import LEGACY_SYSCALL
from tests.oracles import QEMU, QEMU64, QEMU_ARGS, require_tool, run_qemu

UNSUPPORTED_IMAGE = 69
run = partial(cli.pvtool, "run")

# Prints the CPU's vendor string, found in long mode, and exits with 5.
VENDOR = """
    .text
    .globl test_main
test_main:
    xor %eax, %eax
    cpuid
    mov %ebx, vendor
    mov %edx, vendor + 4
    mov %ecx, vendor + 8
    lea vendor(%rip), %rsi
1:  lodsb
    test %al, %al
    jz 2f
    call putc
    jmp 1b
2:  mov $'\\n', %al
    call putc
    mov $5, %eax
    ret
    .data
vendor: .space 13
"""
# A Multiboot header without the address fields (flags 0x3), in an ELF64.
NO_KLUDGE = """
    .text
    .long 0x1BADB002, 0x3, -(0x1BADB002 + 0x3)
    .globl _start
_start:
    hlt
"""


@pytest.fixture(scope="module")
def builder(tmp_path_factory) -> GuestBuilder:
    return GuestBuilder(tmp_path_factory.mktemp("native64"))


def test_an_elf64_kernel_prints_qemu_system_x86_64s_bytes_and_status(builder):
    kernel = builder.build64(VENDOR)
    result = run("--native", "--quiet", kernel.elf)
    judge = run_qemu(kernel.elf, qemu=QEMU64)
    assert result.stdout_bytes == judge.stdout == b"AuthenticAMD\n"
    assert result.status == judge.guest_code == 5


def test_an_elf64_without_the_aout_kludge_is_refused_as_qemu_refuses_it(tmp_path):
    kernel = build(tmp_path, NO_KLUDGE, bits=64, entry="_start", text=0x100000)
    result = run("--native", kernel.elf)
    assert result.status == UNSUPPORTED_IMAGE and result.stdout_bytes == b""
    line = result.error_line()
    assert "no address fields (flag 16)" in line and "Cannot load x86-64 image" in line
    qemu = subprocess.run([require_tool(QEMU64), "-kernel", str(kernel.elf), *QEMU_ARGS],
                          capture_output=True, timeout=30)
    assert qemu.returncode == 1
    assert b"Cannot load x86-64 image, give a 32bit one." in qemu.stderr


def test_pv_still_refuses_an_elf64_without_xen_notes(builder):
    kernel = builder.build64(VENDOR)
    result = run(kernel.elf)
    assert result.status == UNSUPPORTED_IMAGE
    assert "64-bit ELF (x86-64); only 32-bit x86 images are supported" in result.error_line()


def test_trap_refuses_an_elf64_whose_entry_is_its_32_bit_stub(builder):
    """--trap starts a 64-bit kernel at its 64-bit ELF entry (hv/trapmode64.py): this
    one's e_entry is its Multiboot entry, 32-bit code."""
    kernel = builder.build64(VENDOR)
    result = run("--trap", kernel.elf)
    assert result.status == UNSUPPORTED_IMAGE and result.stdout_bytes == b""
    assert "is its 32-bit Multiboot entry; --trap starts a 64-bit kernel at a 64-bit " \
        "ELF entry" in result.error_line()


GUEST_CRASHED, USAGE = 71, 64


def test_pc_chooses_the_pc_a_32_bit_kernel_boots_on(builder):
    """An ELF32 kernel's syscall: #UD on the i386 PC (an empty IDT: a triple fault, as
    on qemu-system-i386), a legacy-mode system call on the x86_64 PC."""
    kernel = builder.build(LEGACY_SYSCALL)
    on_x86_64 = run("--native", "--quiet", "--pc", "x86_64", kernel.elf)
    judge = run_qemu(kernel.elf, qemu=QEMU64)
    assert on_x86_64.stdout_bytes == judge.stdout and judge.stdout.endswith(b"0000600d\n")
    assert on_x86_64.status == judge.guest_code == 3
    on_i386 = run("--native", "--quiet", kernel.elf)
    judge = run_qemu(kernel.elf, qemu=QEMU)
    assert on_i386.stdout_bytes == judge.stdout == b""
    assert (on_i386.status, judge.status) == (GUEST_CRASHED, 0)  # -no-reboot: QEMU ends
    assert run("--native", "--quiet", "--pc", "i386", kernel.elf).status == GUEST_CRASHED


def test_pc_is_for_native_boots_only(builder):
    result = run("--trap", "--pc", "x86_64", builder.build(LEGACY_SYSCALL).elf)
    assert result.status == USAGE
    assert "--pc needs --native" in result.error_line()


def test_the_pcs_the_cli_offers_are_the_ones_run_knows():
    from pvtool.cli import run as run_command

    (pc,) = [param for param in run_command.params if param.name == "pc"]
    assert list(pc.type.choices) == list(PCS) == ["i386", "x86_64"]


def test_json_shows_the_64_bit_registers_at_the_stop(builder, tmp_path):
    kernel = builder.build64(VENDOR)
    summary = tmp_path / "run.json"
    assert run("--native", "--quiet", "--json", summary, kernel.elf).status == 5
    registers = json.loads(summary.read_text())["registers"]
    assert {"rax", "r15", "rip", "rflags", "cr4"} <= registers.keys()
    assert "eip" not in registers
    assert registers["rax"] == 5 and registers["cpl"] == 0
    assert kernel["finish"] < registers["rip"] < kernel["exit_failed"] + 2
    stop = json.loads(summary.read_text())["stop"]  # ip is RIP; eip, kept, the same
    assert stop["ip"] == stop["eip"] and kernel["finish"] < stop["ip"] < kernel["exit_failed"] + 2
