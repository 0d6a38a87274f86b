"""Writable page tables for a 64-bit kernel (Xen's ptwr_do_page_fault): a store into
one of its L1 tables, which are mapped read-only, is decoded, merged into the 8-byte
entry, validated as mmu_update would (the user and _PAGE_GUEST_KERNEL bits added) and
written, and the kernel moves past it; a store into an upper-level table is not
emulated (Xen's rule) and stays the guest's #PF.

The store is made as the fault handler receives it: the vCPU on the guest's store
instruction with its registers set, and the #PF's address and error code (as Xen
rewrites it for kernel mode: U clear) handed to hv/ptwr.py.
"""

import pytest

from pvtool.hv.errors import DomainCrash
from pvtool.hv.ptwr import handle_write_fault
from pvtool.machine.cpu import CR3, GPRS64_BY_NAME, RIP
from pvtool.machine.exits import Exit
from tests.hv.harness import boot
from tests.hv.xenguest64 import (
    ADDRESS,
    GUEST_KERNEL,
    PAGE,
    RAM,
    RW,
    US,
    VIRT_BASE,
    A,
    D,
    P,
    entry_addresses,
    read_u64,
)

PF_P, PF_W = 1, 2
RAX, RBX = GPRS64_BY_NAME["rax"], GPRS64_BY_NAME["rbx"]

STORES = """
store_qword:
    mov qword ptr [rbx], rax
after_qword:
store_dword:
    mov dword ptr [rbx + 4], eax
after_dword:
store_imm:
    mov qword ptr [rbx], 0x63
after_imm:
"""


@pytest.fixture(scope="module")
def guest(build64):
    return build64(handlers=STORES, bss="frames: .skip 4096 * 2")


@pytest.fixture
def dom(guest):
    return boot(guest, ram=RAM)


def store(dom, label: str, address: int, value: int, displacement: int = 0) -> bool:
    """The kernel's store at LABEL of VALUE (RAX) to ADDRESS (RBX) + DISPLACEMENT,
    which faults there; ptwr's answer."""
    dom.cpu.write(RIP, dom.guest[label])
    dom.cpu.write(RBX, address)
    dom.cpu.write(RAX, value)
    return handle_write_fault(dom.domain, address + displacement, PF_P | PF_W)


def l1e(dom) -> int:
    """The machine address of the L1 entry mapping scratch frame 0."""
    return entry_addresses(dom, dom.guest["frames"])[3]


def frame(dom, index: int) -> int:
    return dom.addr("frames") + index * PAGE


def test_a_qword_store_into_an_l1_is_validated_written_and_stepped_over(dom):
    assert store(dom, "store_qword", l1e(dom) + VIRT_BASE, frame(dom, 1) | P | RW | A | D)
    assert read_u64(dom, l1e(dom)) == frame(dom, 1) | P | RW | A | D | US | GUEST_KERNEL
    assert dom.cpu.read(RIP) == dom.guest["after_qword"]


def test_a_dword_store_merges_into_the_entrys_upper_half(dom):
    """The kernel sets NX in the upper half it read (keeping _PAGE_GUEST_KERNEL)."""
    before = read_u64(dom, l1e(dom))
    upper = before >> 32 | 0x8000_0000
    assert store(dom, "store_dword", l1e(dom) + VIRT_BASE, upper, 4)
    assert read_u64(dom, l1e(dom)) == before | 1 << 63
    assert dom.cpu.read(RIP) == dom.guest["after_dword"]


def test_an_immediate_store_is_sign_extended_to_the_entry(dom):
    assert store(dom, "store_imm", l1e(dom) + VIRT_BASE, 0)
    assert read_u64(dom, l1e(dom)) == 0x63 | US | GUEST_KERNEL  # frame 0, P|RW|A|D
    assert dom.cpu.read(RIP) == dom.guest["after_imm"]


def test_a_store_mapping_a_page_table_writable_crashes_the_domain(dom):
    before = read_u64(dom, l1e(dom))
    l4 = dom.cpu.read(CR3) & ADDRESS
    with pytest.raises(DomainCrash, match="invalid page-table entry"):
        store(dom, "store_qword", l1e(dom) + VIRT_BASE, l4 | P | RW | A | D)
    assert read_u64(dom, l1e(dom)) == before


def test_a_store_into_the_l4_is_left_to_the_guest_as_on_xen(dom):
    l4 = dom.cpu.read(CR3) & ADDRESS
    before = read_u64(dom, l4 + 8 * 300)
    assert not store(dom, "store_qword", l4 + VIRT_BASE + 8 * 300, frame(dom, 1) | P | RW)
    assert read_u64(dom, l4 + 8 * 300) == before
    assert dom.cpu.read(RIP) == dom.guest["store_qword"]


# -- through the CPU: the 64-bit supervisor's #PF path (hv/entry64.py) ---------------------
REMAP = """
    mov rbx, [rip + l1e_va]
    mov rax, [rip + new_pte]
    mov qword ptr [rbx], rax
    mov rax, [rip + frames]
    mov [rip + seen], rax
"""
REMAP_DATA = "l1e_va: .quad 0\nnew_pte: .quad 0\nseen: .quad 0"


def test_a_kernels_own_store_into_its_l1_is_emulated_and_the_new_mapping_used(build64):
    """The guest's store faults (its L1 is mapped read-only), Xen's ptwr emulates it
    (pv/ro-page-fault.c), and the guest goes on to read through the new entry."""
    dom = boot(build64(REMAP, data=REMAP_DATA, bss="frames: .skip 4096 * 2"), ram=RAM)
    dom.write("l1e_va", (l1e(dom) + VIRT_BASE).to_bytes(8, "little"))
    dom.write("new_pte", (frame(dom, 1) | P | RW | A | D).to_bytes(8, "little"))
    dom.memory.write_phys(frame(dom, 1), (0x5EE).to_bytes(8, "little"))
    stop = dom.run()
    assert stop.reason == "shutdown (poweroff)", stop
    assert int.from_bytes(dom.memory.read_phys(dom.addr("seen"), 8), "little") == 0x5EE
    assert read_u64(dom, l1e(dom)) == frame(dom, 1) | P | RW | A | D | US | GUEST_KERNEL
    assert dom.machine.exits[Exit.PTWR] == 1
