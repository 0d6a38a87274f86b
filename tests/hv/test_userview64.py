"""User mode's page tables under 64-bit trap-and-emulate (hv/userview64.py): the
kernel's tree with the pages it mapped for itself supervisor-only, copied only where
such a page is, Xen's slots left as they are."""

import struct

from pvtool.abi.xen64 import PAGE_GUEST_KERNEL, RO_MPT_L4_SLOT
from pvtool.hv.userview64 import UserView
from pvtool.machine.pc import Machine
from pvtool.x86 import paging

L4, L3, L2, L1_MIXED, L1_USER = (0x10000 + i * 0x1000 for i in range(5))
POOL = 0x40000
UPPER = paging.P | paging.RW | paging.US
USER_PAGE = 0x200000 | paging.P | paging.RW | paging.US
KERNEL_PAGE = 0x201000 | paging.P | paging.RW | paging.US | PAGE_GUEST_KERNEL


def table(entries: dict[int, int]) -> bytes:
    return struct.pack("<512Q", *(entries.get(i, 0) for i in range(512)))


def entries(machine: Machine, address: int) -> tuple[int, ...]:
    return struct.unpack("<512Q", machine.memory.read_phys(address, 4096))


def built() -> tuple[Machine, UserView, int]:
    machine = Machine(output=lambda data: None, bits=64)
    write = machine.memory.write_phys
    write(L4, table({0: L3 | UPPER, RO_MPT_L4_SLOT: 0x123000 | paging.P}))
    write(L3, table({0: L2 | UPPER}))
    write(L2, table({0: L1_MIXED | UPPER, 1: L1_USER | UPPER}))
    write(L1_MIXED, table({0: USER_PAGE, 1: KERNEL_PAGE}))
    write(L1_USER, table({0: USER_PAGE}))
    view = UserView(machine.memory, POOL, 8)
    return machine, view, view.build(L4 >> 12)


def test_the_kernels_pages_are_supervisor_only_in_the_view():
    machine, _, l4 = built()
    l3 = entries(machine, l4)[0] & ~0xFFF
    l2 = entries(machine, l3)[0] & ~0xFFF
    l1 = entries(machine, l2)[0] & ~0xFFF
    assert l1 != L1_MIXED
    assert entries(machine, l1)[:2] == (USER_PAGE, KERNEL_PAGE & ~paging.US)


def test_tables_without_kernel_pages_are_shared_and_xens_slots_kept():
    machine, view, l4 = built()
    l2 = entries(machine, entries(machine, entries(machine, l4)[0] & ~0xFFF)[0] & ~0xFFF)
    assert l2[1] == L1_USER | UPPER
    assert entries(machine, l4)[RO_MPT_L4_SLOT] == 0x123000 | paging.P
    assert view.used == 4  # L4, L3, L2 and the mixed L1: the rest is the kernel's own


def test_the_kernels_tables_are_left_as_they_were():
    machine, _, _ = built()
    assert entries(machine, L1_MIXED)[:2] == (USER_PAGE, KERNEL_PAGE)
