"""A kernel's invlpg under PV drops one page's translation, in the CPU's TLB itself
(QEMU's tlb_flush_page, machine/qemu_functions.py): through mmuext_op
MMUEXT_INVLPG_LOCAL, update_va_mapping with UVMF_INVLPG, or the invlpg instruction the
hypervisor emulates (XEN-ABI.md, "Page tables"; xen/include/public/xen.h,
MMUEXT_INVLPG_LOCAL and UVMF_INVLPG).

Each guest reads two data pages X and Y and calls the code on a page C (so the CPU
caches their translations and C's translated block), remaps all three onto other
frames with update_va_mapping(UVMF_NONE), which leaves the TLB alone, and flushes X
and C only. X and C then show their new frames' bytes and code; Y keeps its stale
translation, as on hardware, until its own invlpg: the flush is per page, not whole.
32-bit guests run at ring 1 (mmu index "kernel"), 64-bit ones at CPL 3 (index "user").
"""

import pytest

from tests.hv.harness import boot
from tests.hv.xenguest import DEFAULT_NOTES, PAE_NOTES
from tests.hv.xenguest64 import VIRT_BASE

OLD_X, NEW_X, OLD_Y, NEW_Y = 0xAAAA0000, 0xBBBB1111, 0xCCCC2222, 0xDDDD3333
OLD_CODE, NEW_CODE = 0xA1, 0xB2

# What the guest records, in order.
RESULTS = ("x_before", "y_before", "code_before", "code_stale", "x_after", "y_stale",
           "code_after", "y_after")
EXPECTED = {"x_before": OLD_X, "y_before": OLD_Y, "code_before": OLD_CODE,
            "code_stale": OLD_CODE, "x_after": NEW_X, "y_stale": OLD_Y,
            "code_after": NEW_CODE, "y_after": NEW_Y}

# Scratch pages: X, X's new frame, Y, Y's new frame, C, C's new frame.
X, NEW_X_FRAME, Y, NEW_Y_FRAME, C, NEW_C_FRAME = (4096 * i for i in range(6))
SCRATCH = r"""
    .balign 4096
frames: .skip 4096 * 6
"""


def mov_eax_ret(value: int) -> tuple[int, int]:
    """`mov eax, VALUE; ret` (b8 imm32 c3) as two dwords, zero-padded."""
    code = bytes([0xB8]) + value.to_bytes(4, "little") + bytes([0xC3, 0, 0])
    return int.from_bytes(code[:4], "little"), int.from_bytes(code[4:], "little")


def fill(store: str) -> str:
    """The guest's stores of each frame's bytes, STORE formatting one (offset, value)."""
    values = {X: OLD_X, NEW_X_FRAME: NEW_X, Y: OLD_Y, NEW_Y_FRAME: NEW_Y}
    for frame, value in ((C, OLD_CODE), (NEW_C_FRAME, NEW_CODE)):
        low, high = mov_eax_ret(value)
        values[frame], values[frame + 4] = low, high
    return "".join(store.format(offset=offset, value=value)
                   for offset, value in values.items())


# How each width reads a page, calls C, remaps a page and flushes one.
WIDTHS = {
    32: {
        "read": "    mov eax, [frames + {page}]\n    mov [{name}], eax\n",
        "call": "    mov edx, offset frames + {page}\n    call edx\n    mov [{name}], eax\n",
        "store": "    mov dword ptr [frames + {offset}], {value:#x}\n",
        "remap": r"""
    mov ebx, offset frames + {page}
    mov ecx, offset frames + {frame} + 0x63
    xor edx, edx
    mov esi, {uvmf}
    HYPERCALL update_va_mapping
    add [remap_failures], eax
""",
        "mmuext": r"""
    mov dword ptr [invlpg_op + 4], offset frames + {page}
    MMUEXT_OP invlpg_op
    add [remap_failures], eax
""",
        "instruction": "    invlpg [frames + {page}]\n",
    },
    64: {
        "read": "    mov eax, [rip + frames + {page}]\n    mov [rip + {name}], eax\n",
        "call": "    lea rdx, [rip + frames + {page}]\n    call rdx\n    mov [rip + {name}], eax\n",
        "store": "    mov dword ptr [rip + frames + {offset}], {value:#x}\n",
        "remap": r"""
    lea rdi, [rip + frames + {page}]
    lea rsi, [rip + frames + {frame} + 0x63]
    mov rax, """ + f"{VIRT_BASE:#x}" + r"""
    sub rsi, rax
    mov edx, {uvmf}
    HYPERCALL update_va_mapping
    add [rip + remap_failures], eax
""",
        "mmuext": r"""
    lea rax, [rip + frames + {page}]
    mov [rip + invlpg_op + 8], rax
    lea rdi, [rip + invlpg_op]
    mov esi, 1
    xor edx, edx
    mov r10d, DOMID_SELF
    HYPERCALL mmuext_op
    add [rip + remap_failures], eax
""",
    },
}
UVMF_NONE, UVMF_INVLPG = 0, 2
RESULT_DATA = "".join(f"{name}: .long 0\n" for name in RESULTS) + "remap_failures: .long 0\n"
DATA = {32: RESULT_DATA + "invlpg_op: .long MMUEXT_INVLPG_LOCAL, 0, 0\n",
        64: RESULT_DATA + "    .balign 8\ninvlpg_op: .long 7, 0\n    .quad 0, 0\n"}


def guest(bits: int, how: str) -> str:
    """The guest's text for BITS: X and C flushed HOW ("mmuext", "uvmf": by remapping
    them again with UVMF_INVLPG, or "instruction"), Y after its stale read (by the
    instruction on 32-bit, by mmuext_op on 64-bit: see the 64-bit test)."""
    asm = WIDTHS[bits]

    def remap(page, frame, uvmf=UVMF_NONE):
        return asm["remap"].format(page=page, frame=frame, uvmf=uvmf)

    def flush(page, frame):
        return remap(page, frame, UVMF_INVLPG) if how == "uvmf" else asm[how].format(page=page)

    def read(page, name):
        return asm["read"].format(page=page, name=name)

    def call(name):
        return asm["call"].format(page=C, name=name)

    return "".join([
        fill(asm["store"]),
        read(X, "x_before"), read(Y, "y_before"), call("code_before"),
        remap(Y, NEW_Y_FRAME), remap(C, NEW_C_FRAME), call("code_stale"),
        remap(X, NEW_X_FRAME), flush(X, NEW_X_FRAME), flush(C, NEW_C_FRAME),
        read(X, "x_after"), read(Y, "y_stale"), call("code_after"),
        asm["instruction" if bits == 32 else "mmuext"].format(page=Y), read(Y, "y_after"),
    ])


def results(booted) -> dict[str, int]:
    return {name: booted.u32(name) for name in RESULTS}


@pytest.mark.parametrize("notes", [DEFAULT_NOTES, PAE_NOTES], ids=["2-level", "pae"])
@pytest.mark.parametrize("how", ["mmuext", "uvmf", "instruction"])
def test_a_32_bit_kernels_invlpg_flushes_that_page_only(run_guest, how, notes):
    booted = run_guest(guest(32, how), data=DATA[32], bss=SCRATCH, notes=notes)
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.u32("remap_failures") == 0
    assert results(booted) == EXPECTED


@pytest.mark.parametrize("how", ["mmuext", "uvmf"])
def test_a_64_bit_kernels_invlpg_flushes_that_page_only(build64, how):
    """A 64-bit PV kernel flushes through the hypervisor: its own invlpg is not
    emulated under PV here (it is a #GP for the kernel)."""
    booted = boot(build64(guest(64, how), data=DATA[64], bss=SCRATCH))
    booted.run()
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.u32("done") == 1
    assert booted.u32("remap_failures") == 0
    assert results(booted) == EXPECTED
