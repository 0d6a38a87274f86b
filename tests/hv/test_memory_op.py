"""memory_op (memory.h; Xen's common/memory.c and arch/x86/mm.c) from the idle guest:
the reservations, maximum_ram_page, the E820 map a PV domain gets, and Xen's refusals.

Numbers are typed from memory.h and errno.h here, not imported from pvtool.abi.
"""

import struct

from tests.hv.harness import RAM, hypercall

MEMORY_OP = 12
INCREASE, DECREASE, MAX_RAM_PAGE, CURRENT, MAXIMUM, POPULATE = 0, 1, 2, 3, 4, 6
ADD_TO_PHYSMAP, MEMORY_MAP, MACHINE_MEMORY_MAP, EXCHANGE = 7, 9, 10, 11
EXTENT_SHIFT = 6
DOMID_SELF = 0x7FF0
GUEST = 1  # the domain's own id (xl's first domU)
EPERM, ESRCH, EACCES, EFAULT, EINVAL, EDOM, ENOSYS = 1, 3, 13, 14, 22, 33, 38
E820_RAM = 1
HV_2LEVEL = 0xFC000000
NR_PAGES = RAM // 4096
SCRATCH = """
args: .skip 64
buffer: .skip 256
"""


def neg(errno: int) -> int:
    return -errno & 0xFFFFFFFF


def memory_op(idle, cmd: int, arg: int = 0) -> int:
    return hypercall(idle, MEMORY_OP, cmd, arg)


def test_the_reservations_are_all_of_ram(idle):
    args = idle.addr("args")
    assert memory_op(idle, MAX_RAM_PAGE) == NR_PAGES
    for domid in (DOMID_SELF, GUEST):
        idle.write("args", struct.pack("<H", domid))
        assert memory_op(idle, CURRENT, args) == NR_PAGES
        assert memory_op(idle, MAXIMUM, args) == NR_PAGES
    idle.write("args", struct.pack("<H", 4))
    assert memory_op(idle, CURRENT, args) == neg(ESRCH)
    assert memory_op(idle, CURRENT, HV_2LEVEL) == neg(EFAULT)
    assert memory_op(idle, MAX_RAM_PAGE | 1 << EXTENT_SHIFT) == neg(EINVAL)


def test_a_domain_at_its_maximum_gets_no_extents(idle):
    """The reservation commands return the extents done: none, from start_extent on."""
    for op in (INCREASE, DECREASE, POPULATE):
        assert memory_op(idle, op, idle.addr("args")) == 0
        assert memory_op(idle, op | 5 << EXTENT_SHIFT, HV_2LEVEL) == 5


def test_the_memory_map_is_one_ram_entry(idle):
    args, buffer = idle.addr("args"), idle.addr("buffer")
    idle.write("buffer", b"\xee" * 40)
    idle.write_u32s("args", 4, buffer)
    assert memory_op(idle, MEMORY_MAP, args) == 0
    assert idle.u32s("args", 2) == (1, buffer)
    assert struct.unpack("<QQI", idle.memory.read_phys(buffer, 20)) == (0, RAM, E820_RAM)
    assert idle.memory.read_phys(buffer + 20, 4) == b"\xee" * 4  # one entry, no more
    idle.write("buffer", b"\xee" * 40)
    idle.write_u32s("args", 0, buffer)
    assert memory_op(idle, MEMORY_MAP, args) == 0
    assert idle.u32("args") == 0 and idle.memory.read_phys(buffer, 4) == b"\xee" * 4
    idle.write_u32s("args", 1, HV_2LEVEL - 8)
    assert memory_op(idle, MEMORY_MAP, args) == neg(EFAULT)


def test_what_xen_refuses_a_pv_domain(idle):
    args = idle.addr("args")
    idle.write("args", struct.pack("<HHIII", DOMID_SELF, 0, 1, 0, 0x100))  # grant_table
    assert memory_op(idle, ADD_TO_PHYSMAP, args) == neg(EACCES)
    idle.write("args", struct.pack("<HHIII", DOMID_SELF, 0, 4, 0, 0x100))  # gmfn_foreign
    assert memory_op(idle, ADD_TO_PHYSMAP, args) == neg(ENOSYS)
    idle.write("args", struct.pack("<HHIII", 6, 0, 1, 0, 0x100))
    assert memory_op(idle, ADD_TO_PHYSMAP, args) == neg(ESRCH)
    assert memory_op(idle, ADD_TO_PHYSMAP | 1 << 22, args) == neg(EDOM)
    assert memory_op(idle, MACHINE_MEMORY_MAP, args) == neg(EPERM)
    for op in (EXCHANGE, 5, 8, 12, 13, 14, 15, 28, 63):
        assert memory_op(idle, op, args) == neg(ENOSYS), op
