"""xen32's pv_invlpg keeps every register and every flag, as the invlpg it replaces
does (SDM Vol. 2A, INVLPG: "Flags Affected: None"), though it saves the flags with
lahf and seto rather than pushfd and popfd: a patched kernel run under the hypervisor
prints what QEMU prints running the unpatched one in ring 0.

The kernel sets two mixes of the arithmetic flags (OF SF AF PF, then ZF PF CF), each
followed by an invlpg, and records the flags after it (masked to OF SF ZF AF PF CF,
0x8d5) and the registers it loaded before it.
"""

import pytest

from pvtool.abi.xen import Hypercall
from pvtool.machine.stop import StopKind
from tests.hv.test_emulate_segments import (
    PRINT_RECORDS,
    QUIET_START,
    patched_kernel,
    printed,
    run_patched,
)
from tests.oracles import run_qemu

INVLPG = QUIET_START + r"""
    mov ebx, 0xb0b0b0b0
    mov ecx, 0xc0c0c0c0
    mov edx, 0xd0d0d0d0
    mov esi, 0x51515151
    mov edi, 0xd1d1d1d1
    mov ebp, 0xbbbbbbbb
    mov eax, 0x7fffffff
    add eax, 1                   /* OF SF AF PF */
    invlpg [records]
    pushfd
    pop eax
    and eax, 0x8d5
    mov [records], eax
    cmp ecx, 0xc0c0c0c0
    stc                          /* ZF PF CF */
    invlpg [records + 4]
    pushfd
    pop eax
    and eax, 0x8d5
    mov [records + 4], eax
    mov [records + 8], ebx
    mov [records + 12], ecx
    mov [records + 16], edx
    mov [records + 20], esi
    mov [records + 24], edi
    mov [records + 28], ebp
    mov [records + 32], esp
    jmp report
""" + PRINT_RECORDS


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("invlpg-kernels")


def test_an_invlpg_site_keeps_the_flags_and_the_registers(kernel_dir):
    elf, out, symbols = patched_kernel(kernel_dir, "invlpg", INVLPG, 9)
    expected = printed(0x894, 0x045, 0xB0B0B0B0, 0xC0C0C0C0, 0xD0D0D0D0, 0x51515151,
                       0xD1D1D1D1, 0xBBBBBBBB, symbols["kernel_stack_top"])
    booted = run_patched(out, symbols)
    assert booted.machine.stop.kind is StopKind.GUEST_EXIT and booted.machine.stop.code == 0
    assert bytes(booted.output) == expected
    # mmuext_op: the glue's NEW_BASEPTR onto its identity map, then the two invlpg
    assert booted.domain.hypercalls_by_number[Hypercall.mmuext_op] == 3
    native = run_qemu(elf)
    assert (native.guest_code, native.stdout) == (0, expected)
