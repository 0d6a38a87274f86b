"""Grant tables v1 (grant_table.h; Xen's common/grant_table.c and its compat layer):
grant_table_op from the idle guest, the guest mapping its table and writing an entry,
and a backend using the grant through hv/grants.py with Xen's checks.

Numbers and offsets are typed from grant_table.h here, not imported from pvtool.abi.
"""

import struct

import pytest

from pvtool.hv.grants import GrantRefused
from tests.hv.harness import RAM, hypercall
from tests.hv.xenguest import DEFAULT_NOTES, PAE_NOTES

GRANT_TABLE_OP, UPDATE_VA_MAPPING = 20, 14
MAP, SETUP, DUMP, TRANSFER, COPY, QUERY, SET_VERSION, GET_VERSION = 0, 2, 3, 4, 5, 6, 8, 10
DOMID_SELF, EINVAL, EFAULT, ESRCH, ENOSYS = 0x7FF0, 22, 14, 3, 38
GUEST = 1  # the guest's domain id (xl's first domU); its backends are domain 0
GNTST_OKAY, GNTST_GENERAL, GNTST_BAD_DOMAIN, GNTST_BAD_REF = 0, -1, -2, -3
GNTST_PERMISSION, GNTST_BAD_PAGE, GNTST_BAD_COPY_ARG = -8, -9, -10
GTF_PERMIT_ACCESS, GTF_READONLY, GTF_READING, GTF_WRITING = 1, 4, 8, 16
GNTCOPY_SOURCE_GREF, GNTCOPY_DEST_GREF = 1, 2
HV_2LEVEL = 0xFC000000
PAGE = 4096
NR_PAGES = RAM // PAGE
SCRATCH = """
table: .skip 4096
data: .skip 4096
frame_list: .skip 4096
args: .skip 4096
"""  # page-aligned: the idle guest's .bss starts on a page


def neg(errno: int) -> int:
    return -errno & 0xFFFFFFFF


def gnttab(idle, cmd: int, uop: int, count: int = 1) -> int:
    return hypercall(idle, GRANT_TABLE_OP, cmd, uop, count)


def setup_table(idle, nr_frames: int, dom: int = DOMID_SELF, count: int = 1,
                frame_list: str = "frame_list") -> tuple[int, int]:
    """(result, status) of setup_table into FRAME_LIST."""
    idle.write("args", struct.pack("<HHIhHI", dom, 0, nr_frames, 0x5555, 0,
                                   idle.addr(frame_list)))
    result = gnttab(idle, SETUP, idle.addr("args"), count)
    return result, struct.unpack("<h", idle.memory.read_phys(idle.addr("args") + 8, 2))[0]


def map_table(idle, frame: int) -> None:
    """The guest maps its grant frame FRAME writable at `table`, as Mini-OS does."""
    result = hypercall(idle, UPDATE_VA_MAPPING, idle.addr("table"), frame << 12 | 0x63, 0, 2)
    assert result == 0


def grant(idle, ref: int, frame: int, flags: int = GTF_PERMIT_ACCESS, domid: int = 0) -> None:
    """Write grant REF through the guest's mapping (virtual = physical below it is not
    the table any more: the mapping is what the guest writes through)."""
    idle.domain.copy_to_guest(idle.addr("table") + 8 * ref,
                              struct.pack("<HHI", flags, domid, frame))


def entry_flags(idle, frame: int, ref: int) -> int:
    return struct.unpack("<H", idle.memory.read_phys(frame * PAGE + 8 * ref, 2))[0]


def test_query_size_reports_one_frame_of_sixty_four(idle):
    idle.write("args", struct.pack("<HHIIhH", DOMID_SELF, 0, 0xAAAA, 0xBBBB, 0x77, 0))
    assert gnttab(idle, QUERY, idle.addr("args")) == 0
    assert struct.unpack("<IIh", idle.memory.read_phys(idle.addr("args") + 4, 10)) == \
        (1, 64, GNTST_OKAY)
    assert gnttab(idle, QUERY, idle.addr("args"), 2) == neg(EINVAL)
    idle.write("args", struct.pack("<H", 9))
    assert gnttab(idle, QUERY, idle.addr("args")) == 0
    assert struct.unpack("<h", idle.memory.read_phys(idle.addr("args") + 12, 2))[0] == \
        GNTST_BAD_DOMAIN


def test_setup_table_grows_the_table_and_lists_hypervisor_frames(idle):
    assert setup_table(idle, 4) == (0, GNTST_OKAY)
    frames = idle.u32s("frame_list", 5)
    assert frames[4] == 0  # nothing past nr_frames
    assert len(set(frames[:4])) == 4
    assert all(frame >= HV_2LEVEL >> 12 for frame in frames[:4])  # not the guest's RAM
    idle.write("args", struct.pack("<H", DOMID_SELF))
    gnttab(idle, QUERY, idle.addr("args"))
    assert idle.u32("args", 1) == 4
    # Asking for fewer lists fewer; the table never shrinks.
    assert setup_table(idle, 1) == (0, GNTST_OKAY)
    gnttab(idle, QUERY, idle.addr("args"))
    assert idle.u32("args", 1) == 4


def test_setup_table_refusals(idle):
    assert setup_table(idle, 65) == (0, GNTST_GENERAL)  # above max_nr_frames
    assert idle.u32("frame_list") == 0
    assert setup_table(idle, 1, dom=9) == (0, GNTST_BAD_DOMAIN)
    assert setup_table(idle, 1, count=2)[0] == neg(EINVAL)
    assert setup_table(idle, 1, count=0) == (0, 0x5555)  # compat: count 0 does nothing
    assert setup_table(idle, 1, count=0xFFFFFFFF)[0] == neg(EINVAL)
    # A frame list reaching the hypervisor is -EFAULT before anything else.
    idle.write("args", struct.pack("<HHIhHI", DOMID_SELF, 0, 2, 0, 0, HV_2LEVEL - 4))
    assert gnttab(idle, SETUP, idle.addr("args")) == neg(EFAULT)
    assert gnttab(idle, SETUP, HV_2LEVEL) == neg(EFAULT)


def test_versions_one_only(idle):
    args = idle.addr("args")
    for asked, answer in ((1, 0), (2, neg(ENOSYS)), (3, neg(EINVAL)), (0, neg(EINVAL))):
        idle.write_u32s("args", asked)
        assert gnttab(idle, SET_VERSION, args) == answer
        assert idle.u32("args") == 1  # the version in force is written back
    idle.write_u32s("args", DOMID_SELF, 0)
    assert gnttab(idle, GET_VERSION, args) == 0 and idle.u32("args", 1) == 1
    idle.write_u32s("args", 7, 0)
    assert gnttab(idle, GET_VERSION, args) == neg(ESRCH)


def test_unserved_commands_and_bad_arguments(idle):
    args = idle.addr("args")
    for cmd in (MAP, 1, DUMP, TRANSFER, 7, 9, 11, 12, 13):
        assert gnttab(idle, cmd, args) == neg(ENOSYS), cmd
    assert gnttab(idle, QUERY, args, 0x80000000) == neg(EINVAL)  # (int)count < 0
    assert gnttab(idle, 1 << 12 | QUERY, args) == neg(EINVAL)  # continuation bits


@pytest.mark.parametrize("idle_guest", [DEFAULT_NOTES, PAE_NOTES], ids=["2level", "pae"],
                         indirect=True)
def test_a_backend_writes_through_a_grant_the_guest_wrote(idle_guest, idle):
    assert setup_table(idle, 1) == (0, GNTST_OKAY)
    table_frame = idle.u32("frame_list")
    map_table(idle, table_frame)
    data_frame = idle.addr("data") >> 12
    grant(idle, 8, data_frame)
    grants = idle.domain.grants
    with grants.access(8, write=True) as machine_address:
        assert machine_address == data_frame * PAGE
        assert entry_flags(idle, table_frame, 8) == GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
    assert entry_flags(idle, table_frame, 8) == GTF_PERMIT_ACCESS
    grants.copy_to(8, 100, b"from the disk")
    assert idle.memory.read_phys(idle.addr("data") + 100, 13) == b"from the disk"
    assert grants.copy_from(8, 100, 4) == b"from"
    assert entry_flags(idle, table_frame, 8) == GTF_PERMIT_ACCESS


def refusal(action) -> int:
    with pytest.raises(GrantRefused) as refused:
        action()
    return refused.value.status


def test_a_backend_is_refused_as_xen_refuses(idle):
    setup_table(idle, 1)
    table_frame = idle.u32("frame_list")
    map_table(idle, table_frame)
    grants, data = idle.domain.grants, idle.addr("data") >> 12
    before = idle.memory.read_phys(idle.addr("data"), 16)
    grant(idle, 8, data, GTF_PERMIT_ACCESS | GTF_READONLY)
    assert refusal(lambda: grants.copy_to(8, 0, b"x")) == GNTST_GENERAL
    assert grants.copy_from(8, 0, 1) == before[:1]  # reading a read-only grant is fine
    grant(idle, 9, data, domid=5)
    assert refusal(lambda: grants.copy_from(9, 0, 1)) == GNTST_GENERAL  # another domain's
    grant(idle, 10, data, flags=0)
    assert refusal(lambda: grants.copy_from(10, 0, 1)) == GNTST_GENERAL  # GTF_invalid
    assert refusal(lambda: grants.copy_from(512, 0, 1)) == GNTST_BAD_REF  # one frame: 512
    grant(idle, 11, NR_PAGES + 3)
    assert refusal(lambda: grants.copy_to(11, 0, b"x")) == GNTST_BAD_PAGE  # not its RAM
    page_table = idle.domain.pagetables.base_mfn
    grant(idle, 12, page_table)
    assert refusal(lambda: grants.copy_to(12, 0, b"x")) == GNTST_GENERAL  # a page table
    grant(idle, 13, data)
    assert refusal(lambda: grants.copy_to(13, 4090, b"12345678")) == GNTST_BAD_COPY_ARG
    assert idle.memory.read_phys(idle.addr("data"), 16) == before
    for ref in (8, 9, 10, 11, 12, 13):  # no refusal leaves a grant marked in use
        assert not entry_flags(idle, table_frame, ref) & (GTF_READING | GTF_WRITING)


def copy_op(idle, source: tuple[int, int, int], dest: tuple[int, int, int], length: int,
            flags: int) -> bytes:
    return struct.pack("<IHHIHHHHhH", *source, *dest, length, flags, 0x77, 0)


def test_the_guest_copies_from_its_frame_into_its_grant(idle):
    setup_table(idle, 1)
    map_table(idle, idle.u32("frame_list"))
    data = idle.addr("data") >> 12
    scratch = idle.addr("frame_list") >> 12
    idle.write("frame_list", b"granted bytes")
    grant(idle, 8, data, domid=GUEST)  # the guest copies through its grant as itself
    ops = (copy_op(idle, (scratch, DOMID_SELF, 0), (8, GUEST, 32), 13, GNTCOPY_DEST_GREF)
           + copy_op(idle, (scratch, 3, 0), (8, GUEST, 0), 4, GNTCOPY_DEST_GREF)
           + copy_op(idle, (scratch, DOMID_SELF, 4000), (8, DOMID_SELF, 0), 200,
                     GNTCOPY_DEST_GREF)
           + copy_op(idle, (8, DOMID_SELF, 32), (scratch, DOMID_SELF, 100), 7,
                     GNTCOPY_SOURCE_GREF))
    idle.write("args", ops[:48])
    assert gnttab(idle, COPY, idle.addr("args"), 2) == 0
    statuses = [struct.unpack("<h", idle.memory.read_phys(idle.addr("args") + 24 * i + 20,
                                                          2))[0] for i in range(2)]
    assert statuses == [GNTST_OKAY, GNTST_PERMISSION]
    assert idle.memory.read_phys(idle.addr("data") + 32, 13) == b"granted bytes"
    idle.write("args", ops[48:])  # the other two
    assert gnttab(idle, COPY, idle.addr("args"), 2) == 0
    statuses = [struct.unpack("<h", idle.memory.read_phys(idle.addr("args") + 24 * i + 20,
                                                          2))[0] for i in range(2)]
    assert statuses == [GNTST_BAD_COPY_ARG, GNTST_OKAY]
    assert idle.memory.read_phys(idle.addr("frame_list") + 100, 7) == b"granted"
