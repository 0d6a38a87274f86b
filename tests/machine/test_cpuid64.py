"""CPUID on the x86_64 PC (machine/cpuid.py's QEMU64): a probe prints every leaf
with subleaves 0-3 (basic) and 0-1 (extended), the hypervisor leaves, and leaves past
each maximum, and pvtool prints what qemu-system-x86_64 prints."""

from pvtool.machine.cpuid import QEMU64
from tests.machine.harness import assert_same_as_qemu, run_native

# query: ESI the leaf, EDI the subleaf; two records, EBX:EAX and EDX:ECX.
PROBE = """    .text
    .globl test_main
# query leaf, subleaf: two records, EBX:EAX and EDX:ECX
query:                          # ESI leaf, EDI subleaf
    mov %esi, %eax
    mov %edi, %ecx
    cpuid
    shl $32, %rbx
    or %rbx, %rax
    shl $32, %rdx
    or %rdx, %rcx
    pushq %rax
    call record_pop
    pushq %rcx
    call record_pop
    ret
test_main:
    xor %esi, %esi
1:  xor %edi, %edi
2:  call query
    inc %edi
    cmp $4, %edi
    jb 2b
    inc %esi
    cmp $0xe, %esi
    jb 1b
    mov $0x80000000, %esi
3:  xor %edi, %edi
4:  call query
    inc %edi
    cmp $2, %edi
    jb 4b
    inc %esi
    cmp $0x8000000c, %esi
    jb 3b
    mov $0x40000000, %esi
    xor %edi, %edi
    call query
    mov $0x40000001, %esi
    call query
    mov $0x40000002, %esi
    call query
    mov $0xc0000000, %esi
    call query
    mov $0x0e, %esi
    mov $1, %edi
    call query
    mov $0xffffffff, %esi
    mov $2, %edi
    call query
    xor %eax, %eax
    ret
"""


def text(*registers: int) -> bytes:
    return b"".join(value.to_bytes(4, "little") for value in registers)


def test_every_leaf_answers_as_on_qemu_system_x86_64(build64):
    run = run_native(build64(PROBE), bits=64)
    assert_same_as_qemu(run)
    assert len(run.records64()) == 2 * (14 * 4 + 12 * 2 + 6)


def test_qemu64_is_an_amd_cpu_with_long_mode_syscall_and_nx():
    top, ebx, ecx, edx = QEMU64.cpuid(0, 0)
    assert top == 0xD and text(ebx, edx, ecx) == b"AuthenticAMD"
    _, _, ext_ecx, ext_edx = QEMU64.cpuid(0x80000001, 0)
    assert ext_edx & (1 << 29 | 1 << 20 | 1 << 11) == 1 << 29 | 1 << 20 | 1 << 11
    assert QEMU64.signature == 0x60FB1 and QEMU64.features == 0x078BFBFD


def test_past_the_maximum_answers_as_leaf_0xd():
    assert QEMU64.cpuid(0x8000000B, 1) == QEMU64.cpuid(0xE, 1) == QEMU64.cpuid(0xD, 1)
