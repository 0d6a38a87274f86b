"""mmu_update and the TLB, as on Xen: an L1 entry's update leaves the old translation
in the TLB until the guest's own invlpg or flush (do_mmu_update, xen/arch/x86/mm.c:
mod_l1_entry asks for no flush; a PV kernel follows its PTE updates with
MMUEXT_INVLPG_LOCAL or a TLB flush), while an update that links a table into an L2
is flushed by the hypervisor at once.

The guest reads data pages X and Y (their translations cached), remaps Y with
update_va_mapping(UVMF_NONE) and X with mmu_update, and reads X again: the old page,
stale. Its invlpg of X shows the new page, Y still stale; then mmu_update links a new
L1 into an empty L2 slot, and Y shows its new page: that update flushed the TLB.
"""

import struct

import pytest

from pvtool.machine.cpu import CR3
from tests.hv.harness import boot
from tests.hv.test_tlb import WIDTHS as TLB_STEPS  # its invlpg through mmuext_op
from tests.hv.xenguest64 import entry_addresses, read_u64

OLD_X, NEW_X, OLD_Y, NEW_Y = 0xAAAA0000, 0xBBBB1111, 0xCCCC2222, 0xDDDD3333
# Scratch pages: X, X's new frame, Y, Y's new frame, the L1 the guest links.
X, NEW_X_FRAME, Y, NEW_Y_FRAME, NEW_L1 = (4096 * i for i in range(5))
SCRATCH = ".balign 4096\nframes: .skip 4096 * 5\n"
RESULTS = ("x_before", "y_before", "x_stale", "x_after", "y_stale", "y_after")
EXPECTED = {"x_before": OLD_X, "y_before": OLD_Y, "x_stale": OLD_X, "x_after": NEW_X,
            "y_stale": OLD_Y, "y_after": NEW_Y}
RW = 2
UVMF_NONE, UVMF_INVLPG = 0, 2
TABLE_FLAGS = 0x27  # P, RW, US, A: a link to a table
# What the test fills in before the guest runs: two mmu_update requests (u64 ptr,
# u64 val), Y's new PTE and the new L1's read-only PTE.
FILLED = ("x_update", "link_update", "y_pte", "l1_pte")
DATA = ("    .balign 8\nx_update: .quad 0, 0\nlink_update: .quad 0, 0\n"
        "y_pte: .quad 0\nl1_pte: .quad 0\nremap_failures: .long 0\n"
        "invlpg_op: .long 7, 0, 0, 0, 0, 0\n"
        + "".join(f"{name}: .long 0\n" for name in RESULTS))

STEPS = {
    32: {
        "store": "    mov dword ptr [frames + {page}], {value:#x}\n",
        "read": "    mov eax, [frames + {page}]\n    mov [{name}], eax\n",
        "remap": r"""
    mov ebx, offset frames + {page}
    mov ecx, [{pte}]
    xor edx, edx
    mov esi, {uvmf}
    HYPERCALL update_va_mapping
    add [remap_failures], eax
""",
        "update": r"""
    mov ebx, offset {request}
    mov ecx, 1
    xor edx, edx
    mov esi, DOMID_SELF
    HYPERCALL mmu_update
    add [remap_failures], eax
""",
    },
    64: {
        "store": "    mov dword ptr [rip + frames + {page}], {value:#x}\n",
        "read": "    mov eax, [rip + frames + {page}]\n    mov [rip + {name}], eax\n",
        "remap": r"""
    lea rdi, [rip + frames + {page}]
    mov rsi, [rip + {pte}]
    mov edx, {uvmf}
    HYPERCALL update_va_mapping
    add [rip + remap_failures], eax
""",
        "update": r"""
    lea rdi, [rip + {request}]
    mov esi, 1
    xor edx, edx
    mov r10d, DOMID_SELF
    HYPERCALL mmu_update
    add [rip + remap_failures], eax
""",
    },
}


def guest(bits: int) -> str:
    step = STEPS[bits]
    stores = {X: OLD_X, NEW_X_FRAME: NEW_X, Y: OLD_Y, NEW_Y_FRAME: NEW_Y}
    return "".join([
        *(step["store"].format(page=page, value=value) for page, value in stores.items()),
        step["remap"].format(page=NEW_L1, pte="l1_pte", uvmf=UVMF_INVLPG),
        step["read"].format(page=X, name="x_before"),
        step["read"].format(page=Y, name="y_before"),
        step["remap"].format(page=Y, pte="y_pte", uvmf=UVMF_NONE),
        step["update"].format(request="x_update"),
        step["read"].format(page=X, name="x_stale"),
        TLB_STEPS[bits]["mmuext"].format(page=X),
        step["read"].format(page=X, name="x_after"),
        step["read"].format(page=Y, name="y_stale"),
        step["update"].format(request="link_update"),
        step["read"].format(page=Y, name="y_after"),
    ])


class Tables:
    """A width's page-table walk, done here: the L1 and L2 entries of a page, and
    where an empty L2 slot is."""

    def __init__(self, booted, bits: int):
        self.booted, self.bits = booted, bits
        self.size, self.span = (4, 1 << 22) if bits == 32 else (8, 1 << 21)

    def read(self, address: int) -> int:
        if self.bits == 32:
            return self.booted.memory.read_u32(address)
        return read_u64(self.booted, address)

    def l1e(self, vaddr: int) -> int:
        if self.bits == 32:
            return self.booted.pte_address(vaddr)
        return entry_addresses(self.booted, vaddr)[3]

    def l2e(self, vaddr: int) -> int:
        if self.bits == 32:
            return (self.booted.cpu.read(CR3) & ~0xFFF) + 4 * (vaddr >> 22)
        return entry_addresses(self.booted, vaddr)[2]

    def empty_l2e(self, near: int) -> int:
        """An empty L2 slot after NEAR's, in the same L2."""
        for step in range(1, 64):
            address = self.l2e(near + step * self.span)
            if address >> 12 == self.l2e(near) >> 12 and self.read(address) == 0:
                return address
        raise AssertionError("no empty L2 slot near the scratch frames")


def fill(booted, bits: int) -> int:
    """Fill the guest's requests in; the new L1's frame number."""
    tables, frames = Tables(booted, bits), booted.guest["frames"]
    pte = {page: tables.read(tables.l1e(frames + page)) for page in (NEW_X_FRAME, NEW_Y_FRAME,
                                                                      NEW_L1)}
    new_l1 = pte[NEW_L1] & 0xFFFFFFFFFF000
    link = tables.empty_l2e(frames)
    values = {"x_update": (tables.l1e(frames + X), pte[NEW_X_FRAME]),
              "link_update": (link, new_l1 | TABLE_FLAGS), "y_pte": (pte[NEW_Y_FRAME],),
              "l1_pte": (pte[NEW_L1] & ~RW,)}
    for name in FILLED:
        booted.write(name, struct.pack(f"<{len(values[name])}Q", *values[name]))
    return new_l1 >> 12


@pytest.mark.parametrize("bits", [32, 64])
def test_mmu_update_of_an_l1_entry_waits_for_invlpg_and_a_table_link_flushes(
        build, build64, bits):
    image = build(guest(32), data=DATA, bss=SCRATCH) if bits == 32 else \
        build64(guest(64), data=DATA, bss=SCRATCH)
    booted = boot(image)
    new_l1 = fill(booted, bits)
    booted.run()
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.u32("remap_failures") == 0
    assert {name: booted.u32(name) for name in RESULTS} == EXPECTED
    assert booted.domain.pagetables.typed[new_l1] == 1

