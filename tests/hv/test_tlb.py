"""A kernel's invlpg under PV drops one page's translation, in the CPU's TLB itself
(machine/tlb.py): through mmuext_op MMUEXT_INVLPG_LOCAL, update_va_mapping with
UVMF_INVLPG, or the invlpg instruction the hypervisor emulates (XEN-ABI.md, "Page
tables"; xen/include/public/xen.h, MMUEXT_INVLPG_LOCAL and UVMF_INVLPG).

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


# -- 32-bit (2-level and PAE) ---------------------------------------------------------------
REMAP32 = r"""
    mov ebx, offset frames + {page}
    mov ecx, offset frames + {frame} + 0x63
    xor edx, edx
    mov esi, {uvmf}
    HYPERCALL update_va_mapping
    add [remap_failures], eax
"""

FLUSH32 = {
    "mmuext": r"""
    mov dword ptr [invlpg_op + 4], offset frames + {page}
    MMUEXT_OP invlpg_op
    add [remap_failures], eax
""",
    "instruction": "    invlpg [frames + {page}]\n",
}

GUEST32 = r"""
{fill}
    mov eax, [frames + {X}]
    mov [x_before], eax
    mov eax, [frames + {Y}]
    mov [y_before], eax
    mov edx, offset frames + {C}
    call edx
    mov [code_before], eax
{remap_y}{remap_c}
    mov edx, offset frames + {C}
    call edx
    mov [code_stale], eax
{remap_x}{flush_x}{flush_c}
    mov eax, [frames + {X}]
    mov [x_after], eax
    mov eax, [frames + {Y}]
    mov [y_stale], eax
    mov edx, offset frames + {C}
    call edx
    mov [code_after], eax
{flush_y}
    mov eax, [frames + {Y}]
    mov [y_after], eax
"""

DATA32 = "".join(f"{name}: .long 0\n" for name in RESULTS) + r"""
remap_failures: .long 0
invlpg_op: .long MMUEXT_INVLPG_LOCAL, 0, 0
"""


def guest32(how: str) -> str:
    """GUEST32 with X's and C's flushes made HOW (Y's always by the instruction)."""
    def remap(page, frame, uvmf="UVMF_NONE"):
        return REMAP32.format(page=page, frame=frame, uvmf=uvmf)

    by_uvmf = how == "uvmf"
    return GUEST32.format(
        fill=fill("    mov dword ptr [frames + {offset}], {value:#x}\n"), X=X, Y=Y, C=C,
        remap_y=remap(Y, NEW_Y_FRAME),
        remap_c=remap(C, NEW_C_FRAME),
        remap_x=remap(X, NEW_X_FRAME, "UVMF_INVLPG" if by_uvmf else "UVMF_NONE"),
        flush_x="" if by_uvmf else FLUSH32[how].format(page=X),
        flush_c=remap(C, NEW_C_FRAME, "UVMF_INVLPG") if by_uvmf else FLUSH32[how].format(page=C),
        flush_y=FLUSH32["instruction"].format(page=Y))


def results(booted) -> dict[str, int]:
    return {name: booted.u32(name) for name in RESULTS}


@pytest.mark.parametrize("notes", [DEFAULT_NOTES, PAE_NOTES], ids=["2-level", "pae"])
@pytest.mark.parametrize("how", ["mmuext", "uvmf", "instruction"])
def test_a_32_bit_kernels_invlpg_flushes_that_page_only(run_guest, how, notes):
    booted = run_guest(guest32(how), data=DATA32, bss=SCRATCH, notes=notes)
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.u32("remap_failures") == 0
    assert results(booted) == EXPECTED


# -- 64-bit -----------------------------------------------------------------------------------
REMAP64 = r"""
    lea rdi, [rip + frames + {page}]
    lea rsi, [rip + frames + {frame} + 0x63]
    mov rax, {virt_base:#x}
    sub rsi, rax
    mov edx, {uvmf}
    HYPERCALL update_va_mapping
    add [rip + remap_failures], eax
"""

FLUSH64 = {
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
}

GUEST64 = r"""
{fill}
    mov eax, [rip + frames + {X}]
    mov [rip + x_before], eax
    mov eax, [rip + frames + {Y}]
    mov [rip + y_before], eax
    lea rdx, [rip + frames + {C}]
    call rdx
    mov [rip + code_before], eax
{remap_y}{remap_c}
    lea rdx, [rip + frames + {C}]
    call rdx
    mov [rip + code_stale], eax
{remap_x}{flush_x}{flush_c}
    mov eax, [rip + frames + {X}]
    mov [rip + x_after], eax
    mov eax, [rip + frames + {Y}]
    mov [rip + y_stale], eax
    lea rdx, [rip + frames + {C}]
    call rdx
    mov [rip + code_after], eax
{flush_y}
    mov eax, [rip + frames + {Y}]
    mov [rip + y_after], eax
"""

DATA64 = "".join(f"{name}: .long 0\n" for name in RESULTS) + r"""
remap_failures: .long 0
    .balign 8
invlpg_op: .long 7, 0
    .quad 0, 0
"""
UVMF_NONE, UVMF_INVLPG = 0, 2


def guest64(how: str) -> str:
    def remap(page, frame, uvmf=UVMF_NONE):
        return REMAP64.format(page=page, frame=frame, uvmf=uvmf, virt_base=VIRT_BASE)

    by_uvmf = how == "uvmf"
    return GUEST64.format(
        fill=fill("    mov dword ptr [rip + frames + {offset}], {value:#x}\n"),
        X=X, Y=Y, C=C,
        remap_y=remap(Y, NEW_Y_FRAME),
        remap_c=remap(C, NEW_C_FRAME),
        remap_x=remap(X, NEW_X_FRAME, UVMF_INVLPG if by_uvmf else UVMF_NONE),
        flush_x="" if by_uvmf else FLUSH64[how].format(page=X),
        flush_c=remap(C, NEW_C_FRAME, UVMF_INVLPG) if by_uvmf else FLUSH64[how].format(page=C),
        flush_y=FLUSH64["mmuext"].format(page=Y))


@pytest.mark.parametrize("how", ["mmuext", "uvmf"])
def test_a_64_bit_kernels_invlpg_flushes_that_page_only(build64, how):
    """A 64-bit PV kernel flushes through the hypervisor (its own invlpg is a #GP
    for it: pvtool's PV64 emulates no privileged instruction)."""
    booted = boot(build64(guest64(how), data=DATA64, bss=SCRATCH))
    booted.run()
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.u32("done") == 1
    assert booted.u32("remap_failures") == 0
    assert results(booted) == EXPECTED
