"""Xen's 64-bit memory rules (XEN-ABI64.md 1.1, 1.8), rule by rule: mmu_update on
8-byte entries, update_va_mapping with a 64-bit address and one PTE register,
mmuext_op's 24-byte entries (pins, NEW_BASEPTR, NEW_USER_BASEPTR), the bits a guest
may set, the bits Xen adds, Xen's L4 slots, and each refusal with Xen's errno.

The hypercalls are made from the vCPU of a booted 64-bit guest that has not run
(harness.hypercall), with their arguments in its memory; tables are read here, not
with pvtool's walker. Expected values come from XEN-ABI64.md and from the guest's
own symbols.
"""

import struct

import pytest

from pvtool.hv.errors import DomainCrash
from pvtool.machine.cpu import CR3
from tests.hv.harness import boot, hypercall
from tests.hv.xenguest import HC
from tests.hv.xenguest64 import (
    ADDRESS,
    DOMID_SELF,
    EFAULT,
    EINVAL,
    ENOSYS,
    GUEST_KERNEL,
    M2P_START,
    NEW_BASEPTR,
    NEW_USER_BASEPTR,
    NX,
    PAGE,
    PERDOMAIN_START,
    PIN_L1,
    PIN_L4,
    PS,
    RAM,
    RW,
    UNPIN,
    US,
    UVMF_INVLPG,
    VIRT_BASE,
    A,
    D,
    G,
    P,
    entry_addresses,
    neg,
    read_u64,
    u64s,
)

PCD, PWT, PAT = 0x10, 0x08, 0x80
KERNEL_L1E = P | RW | A | D
UPPER = P | RW | US | A | D
MEMORY_OP, MACHPHYS_MAPPING, MEMORY_MAP = 12, 12, 9

SCRATCH = r"""
args:   .skip 4096
frames: .skip 4096 * 8
"""


@pytest.fixture(scope="module")
def guest(build64):
    return build64("", bss=SCRATCH)


@pytest.fixture
def dom(guest):
    return boot(guest, ram=RAM)


# -- helpers: the guest's addresses and its tables, read here -----------------------------
def va(booted, index: int) -> int:
    """The virtual address of scratch frame INDEX."""
    return booted.guest["frames"] + index * PAGE


def phys(booted, vaddr: int) -> int:
    return vaddr - VIRT_BASE


def write(booted, address: int, value: int) -> None:
    booted.memory.write_phys(address, struct.pack("<Q", value))


def mmu_update(booted, *updates: tuple[int, int]) -> int:
    """mmu_update(args, count, NULL, DOMID_SELF) with UPDATES as (ptr, val) pairs."""
    booted.write("args", b"".join(struct.pack("<QQ", ptr, val) for ptr, val in updates))
    return hypercall(booted, HC.mmu_update, booted.guest["args"], len(updates), 0,
                     DOMID_SELF)


def mmuext(booted, *ops: tuple[int, int]) -> int:
    """mmuext_op with 24-byte entries {u32 cmd, pad, u64 arg1, u64 arg2}."""
    booted.write("args", b"".join(struct.pack("<IIQQ", cmd, 0, arg1, 0) for cmd, arg1 in ops))
    return hypercall(booted, HC.mmuext_op, booted.guest["args"], len(ops), 0, DOMID_SELF)


def update_va_mapping(booted, vaddr: int, pte: int, flags: int = UVMF_INVLPG) -> int:
    """The 64-bit form: (va, val, flags), the whole PTE in one register."""
    return hypercall(booted, HC.update_va_mapping, vaddr, pte, flags)


def make_read_only(booted, index: int) -> None:
    """Map scratch frame INDEX read-only, as a guest must before it is a table."""
    frame = phys(booted, va(booted, index))
    assert update_va_mapping(booted, va(booted, index), frame | P | A) == 0


def l1e_of(booted, index: int) -> int:
    return entry_addresses(booted, va(booted, index))[3]


# -- mmu_update on 8-byte entries -----------------------------------------------------------
def test_a_kernel_l1_entry_gets_the_user_bit_and_guest_kernel_and_is_never_global(dom):
    target = phys(dom, va(dom, 1))
    assert mmu_update(dom, (l1e_of(dom, 0), target | KERNEL_L1E)) == 0
    assert read_u64(dom, l1e_of(dom, 0)) == target | KERNEL_L1E | US | GUEST_KERNEL


def test_a_user_l1_entry_is_made_global(dom):
    target = phys(dom, va(dom, 1))
    assert mmu_update(dom, (l1e_of(dom, 0), target | KERNEL_L1E | US)) == 0
    assert read_u64(dom, l1e_of(dom, 0)) == target | KERNEL_L1E | US | G


def test_upper_entries_get_the_user_bit_and_l4_entries_accessed(dom):
    """A fresh L1 linked from an empty L2 slot without US, and a fresh L3 from an
    empty L4 slot without US or A."""
    make_read_only(dom, 0)
    make_read_only(dom, 1)
    l2e = entry_addresses(dom, dom.guest["_start"])[2]
    empty_l2e = l2e - l2e % PAGE + 8 * 300
    empty_l4e = (dom.cpu.read(CR3) & ADDRESS) + 8 * 100
    l1, l3 = phys(dom, va(dom, 0)), phys(dom, va(dom, 1))
    assert mmu_update(dom, (empty_l2e, l1 | P | RW), (empty_l4e, l3 | P | RW)) == 0
    assert read_u64(dom, empty_l2e) == l1 | P | RW | US
    assert read_u64(dom, empty_l4e) == l3 | P | RW | US | A


def test_an_entry_may_carry_nx_and_the_software_bits(dom):
    target = phys(dom, va(dom, 1))
    value = target | KERNEL_L1E | NX | 0xE00 | (0x7FE << 52)
    assert mmu_update(dom, (l1e_of(dom, 0), value)) == 0
    assert read_u64(dom, l1e_of(dom, 0)) == value | US | GUEST_KERNEL


@pytest.mark.parametrize("bits", [PCD, PWT, PAT], ids=["PCD", "PWT", "PAT"])
def test_cache_attributes_are_refused_to_a_domu(dom, bits):
    before = read_u64(dom, l1e_of(dom, 0))
    assert mmu_update(dom, (l1e_of(dom, 0), phys(dom, va(dom, 1)) | KERNEL_L1E | bits)) \
        == neg(EINVAL)
    assert read_u64(dom, l1e_of(dom, 0)) == before


def test_superpages_are_refused(dom):
    l2e = entry_addresses(dom, dom.guest["_start"])[2]
    empty_l2e = l2e - l2e % PAGE + 8 * 300
    assert mmu_update(dom, (empty_l2e, 0x200000 | UPPER | PS)) == neg(EINVAL)
    assert read_u64(dom, empty_l2e) == 0


def test_the_global_bit_is_refused_above_the_l1(dom):
    make_read_only(dom, 0)
    l2e = entry_addresses(dom, dom.guest["_start"])[2]
    empty_l2e = l2e - l2e % PAGE + 8 * 300
    assert mmu_update(dom, (empty_l2e, phys(dom, va(dom, 0)) | UPPER | G)) == neg(EINVAL)


def test_xens_l4_slots_cannot_be_written(dom):
    l4 = dom.cpu.read(CR3) & ADDRESS
    before = u64s(dom.memory.read_phys(l4, PAGE))
    for slot in (256, 260, 271):
        assert mmu_update(dom, (l4 + 8 * slot, 0)) == neg(EINVAL), slot
    assert u64s(dom.memory.read_phys(l4, PAGE)) == before
    assert mmu_update(dom, (l4 + 8 * 272, 0)) == 0  # the first guest slot above


def test_frames_the_domain_does_not_own_are_refused(dom):
    """The M2P's frames (found through slot 256), the private area's (slot 260) and a
    frame past the domain's RAM."""
    m2p_frame = read_u64(dom, entry_addresses(dom, M2P_START)[3]) & ADDRESS
    for frame in (m2p_frame, RAM, 0xFC400000):
        for flags in (P | A, KERNEL_L1E):
            assert mmu_update(dom, (l1e_of(dom, 0), frame | flags)) == neg(EINVAL), \
                hex(frame)


def test_a_page_table_frame_is_never_mapped_writable(dom):
    l4 = dom.cpu.read(CR3) & ADDRESS
    assert mmu_update(dom, (l1e_of(dom, 0), l4 | KERNEL_L1E)) == neg(EINVAL)
    assert mmu_update(dom, (l1e_of(dom, 0), l4 | P | A)) == 0  # read-only it may be


def test_an_entry_address_must_be_8_byte_aligned(dom):
    assert mmu_update(dom, (l1e_of(dom, 0) + 4, 0)) == neg(EINVAL)
    assert mmu_update(dom, (phys(dom, va(dom, 2)) + 4, 0)) == neg(EINVAL)  # not a table


# -- mmu_update into a frame that is no page table in use (xen/arch/x86/mm.c: page_lock
# fails, get_page_type(PGT_writable_page), paging_write_guest_entry) ------------------------
def test_mmu_update_writes_a_frame_that_is_no_page_table_as_plain_memory(dom):
    """No validation: a value every table would refuse (PCD, a frame past the domain's
    RAM) lands as it is, and the frame stays no page table."""
    frame = phys(dom, va(dom, 2))
    dom.memory.write_phys(frame, b"\xaa" * PAGE)
    refused_as_entry = RAM | KERNEL_L1E | PCD
    done = va(dom, 3)
    dom.write("args", struct.pack("<QQQQ", frame + 8 * 7, refused_as_entry, frame, 5))
    assert hypercall(dom, HC.mmu_update, dom.guest["args"], 2, done, DOMID_SELF) == 0
    assert struct.unpack_from("<I", dom.memory.read_phys(phys(dom, done), 4))[0] == 2
    assert read_u64(dom, frame + 8 * 7) == refused_as_entry
    assert read_u64(dom, frame) == 5
    assert dom.memory.read_phys(frame + 8, 8 * 6) == b"\xaa" * 48
    assert frame // PAGE not in dom.domain.pagetables.typed


def test_an_l4_filled_by_mmu_update_is_validated_when_it_becomes_the_user_base(dom):
    """Linux's and the xen64 glue's order: fill the new user L4, then load it."""
    l3 = phys(dom, va(dom, 1))
    make_read_only(dom, 1)
    dom.memory.write_phys(l3, bytes(PAGE))
    l4 = phys(dom, va(dom, 0))
    dom.memory.write_phys(l4, b"\xff" * PAGE)
    assert mmu_update(dom, *((l4 + 8 * slot, 0) for slot in range(512))) == 0
    assert mmu_update(dom, (l4, l3 | P | RW)) == 0
    assert read_u64(dom, l4) == l3 | P | RW  # as written: not yet a table
    make_read_only(dom, 0)
    assert mmuext(dom, (NEW_USER_BASEPTR, l4 // PAGE)) == 0
    assert read_u64(dom, l4) == l3 | P | RW | US | A  # validated on use
    assert dom.domain.pagetables.typed[l4 // PAGE] == 4
    assert dom.domain.pagetables.typed[l3 // PAGE] == 3


def test_a_table_nothing_holds_is_written_as_plain_memory_and_is_no_table_after(dom):
    """An L4 that was the base and is not any more (pvtool keeps it validated) has no
    type reference on Xen, so its entry is written unvalidated and it is a table no
    longer; the base in use is still validated entry by entry."""
    builders = dom.cpu.read(CR3) & ADDRESS
    mfn = new_l4(dom, 0, {511: kernel_slot(dom)})
    assert mmuext(dom, (NEW_BASEPTR, mfn)) == 0
    assert mmuext(dom, (NEW_BASEPTR, builders // PAGE)) == 0
    assert dom.domain.pagetables.typed[mfn] == 4
    assert mmu_update(dom, (mfn * PAGE + 8 * 5, RAM | UPPER)) == 0
    assert read_u64(dom, mfn * PAGE + 8 * 5) == RAM | UPPER
    assert mfn not in dom.domain.pagetables.typed
    assert mmu_update(dom, (builders + 8 * 5, RAM | UPPER)) == neg(EINVAL)


def test_mmu_update_into_a_frame_the_domain_does_not_own_is_refused(dom):
    m2p_frame = read_u64(dom, entry_addresses(dom, M2P_START)[3]) & ADDRESS
    before = read_u64(dom, m2p_frame + 8)
    for frame in (m2p_frame, RAM):
        assert mmu_update(dom, (frame + 8, before ^ 0x1234)) == neg(EINVAL), hex(frame)
    assert read_u64(dom, m2p_frame + 8) == before


# -- update_va_mapping with a 64-bit address ---------------------------------------------
def test_update_va_mapping_takes_a_higher_half_address_and_a_whole_pte(dom):
    target = phys(dom, va(dom, 1))
    assert update_va_mapping(dom, va(dom, 0), target | KERNEL_L1E | NX) == 0
    assert read_u64(dom, l1e_of(dom, 0)) == target | KERNEL_L1E | NX | US | GUEST_KERNEL


@pytest.mark.parametrize("vaddr", [M2P_START, PERDOMAIN_START + PAGE, 0x0000_8000_0000_0000,
                                   0xFFFF_87FF_FFFF_F000],
                         ids=["m2p", "slot-260", "non-canonical", "last-xen-page"])
def test_update_va_mapping_refuses_addresses_outside_the_guests_slots(dom, vaddr):
    assert update_va_mapping(dom, vaddr, phys(dom, va(dom, 1)) | P | A) == neg(EINVAL)


def test_update_va_mapping_of_an_unmapped_address_is_refused(dom):
    assert update_va_mapping(dom, 0x4000_0000, phys(dom, va(dom, 1)) | P | A) == neg(EINVAL)


# -- mmuext_op: pins and bases ---------------------------------------------------------------
def new_l4(dom, index: int, slots: dict[int, int]) -> int:
    """Scratch frame INDEX as an L4 holding SLOTS, mapped read-only; its frame number."""
    table = [0] * 512
    for slot, value in slots.items():
        table[slot] = value
    dom.memory.write_phys(phys(dom, va(dom, index)), struct.pack("<512Q", *table))
    make_read_only(dom, index)
    return phys(dom, va(dom, index)) // PAGE


def kernel_slot(dom) -> int:
    return read_u64(dom, (dom.cpu.read(CR3) & ADDRESS) + 8 * 511)


def test_pinning_an_l4_fills_xens_slots_whatever_the_guest_wrote_there(dom):
    kernel_l4 = u64s(dom.memory.read_phys(dom.cpu.read(CR3) & ADDRESS, PAGE))
    mfn = new_l4(dom, 0, {511: kernel_slot(dom), 256: 0x1000 | UPPER, 260: 0x2000 | UPPER})
    assert mmuext(dom, (PIN_L4, mfn)) == 0
    pinned = u64s(dom.memory.read_phys(mfn * PAGE, PAGE))
    assert pinned[256:272] == kernel_l4[256:272]
    assert pinned[511] == kernel_l4[511]
    assert dom.domain.pagetables.typed[mfn] == 4
    assert mmuext(dom, (UNPIN, mfn)) == 0


def test_an_l4_still_mapped_writable_cannot_be_pinned(dom):
    frame = phys(dom, va(dom, 0))
    dom.memory.write_phys(frame, bytes(PAGE))
    assert mmuext(dom, (PIN_L4, frame // PAGE)) == neg(EINVAL)


def test_a_frame_pinned_as_an_l1_cannot_also_be_an_l4(dom):
    make_read_only(dom, 0)
    mfn = phys(dom, va(dom, 0)) // PAGE
    dom.memory.write_phys(mfn * PAGE, bytes(PAGE))
    assert mmuext(dom, (PIN_L1, mfn)) == 0
    assert mmuext(dom, (PIN_L4, mfn)) == neg(EINVAL)


def test_new_baseptr_loads_the_new_kernel_l4_into_cr3(dom):
    mfn = new_l4(dom, 0, {511: kernel_slot(dom)})
    assert mmuext(dom, (NEW_BASEPTR, mfn)) == 0
    assert dom.cpu.read(CR3) == mfn * PAGE
    assert dom.domain.pagetables.base_mfn == mfn


def test_new_user_baseptr_validates_the_user_l4_and_leaves_cr3(dom):
    cr3 = dom.cpu.read(CR3)
    mfn = new_l4(dom, 0, {})
    assert mmuext(dom, (NEW_USER_BASEPTR, mfn)) == 0
    tables = dom.domain.pagetables
    assert tables.user_base_mfn == mfn and tables.typed[mfn] == 4
    assert dom.cpu.read(CR3) == cr3
    assert u64s(dom.memory.read_phys(mfn * PAGE, PAGE))[256] != 0  # Xen's slots filled


def test_new_user_baseptr_0_clears_it_and_drops_its_reference(dom):
    mfn = new_l4(dom, 0, {})
    frames = dom.domain.frames
    assert mmuext(dom, (NEW_USER_BASEPTR, mfn)) == 0
    held = frames.refs(mfn)
    assert mmuext(dom, (NEW_USER_BASEPTR, 0)) == 0
    assert dom.domain.pagetables.user_base_mfn == 0
    assert frames.refs(mfn) == held - 1


def test_new_user_baseptr_refuses_a_frame_it_does_not_own(dom):
    assert mmuext(dom, (NEW_USER_BASEPTR, RAM // PAGE)) == neg(EINVAL)
    assert dom.domain.pagetables.user_base_mfn == 0


def test_the_toggle_loads_the_user_l4_then_the_kernel_l4(dom):
    kernel = dom.cpu.read(CR3)
    mfn = new_l4(dom, 0, {})
    assert mmuext(dom, (NEW_USER_BASEPTR, mfn)) == 0
    dom.domain.pagetables.load_cr3(user=True)
    assert dom.cpu.read(CR3) == mfn * PAGE
    dom.domain.pagetables.load_cr3(user=False)
    assert dom.cpu.read(CR3) == kernel


def test_going_to_user_mode_with_no_user_l4_crashes_the_domain(dom):
    with pytest.raises(DomainCrash, match="no user page tables"):
        dom.domain.pagetables.load_cr3(user=True)


def test_an_unknown_mmuext_command_is_enosys(dom):
    assert mmuext(dom, (99, 0)) == neg(ENOSYS)


# -- memory_op as a 64-bit guest asks it --------------------------------------------------
def test_machphys_mapping_tells_a_64_bit_guest_where_the_m2p_is(dom):
    assert hypercall(dom, MEMORY_OP, MACHPHYS_MAPPING, dom.guest["args"]) == 0
    v_start, v_end, max_mfn = u64s(dom.memory.read_phys(dom.addr("args"), 24))
    assert (v_start, v_end) == (0xFFFF_8000_0000_0000, 0xFFFF_8040_0000_0000)
    assert max_mfn == (v_end - v_start) // 8 - 1


def test_memory_map_uses_the_64_bit_layout(dom):
    buffer = va(dom, 2)
    dom.write("args", struct.pack("<IIQ", 4, 0, buffer))
    assert hypercall(dom, MEMORY_OP, MEMORY_MAP, dom.guest["args"]) == 0
    assert struct.unpack_from("<I", dom.memory.read_phys(dom.addr("args"), 4))[0] == 1
    assert struct.unpack("<QQI", dom.memory.read_phys(phys(dom, buffer), 20)) == (0, RAM, 1)


# -- guest pointers ----------------------------------------------------------------------
@pytest.mark.parametrize("pointer", [M2P_START, PERDOMAIN_START, 0x0000_8000_0000_0000,
                                     0xFFFF_87FF_FFFF_FFF8],
                         ids=["m2p", "slot-260", "non-canonical", "end-of-xens-range"])
def test_a_hypercall_argument_pointing_outside_the_guests_slots_is_efault(dom, pointer):
    assert hypercall(dom, HC.mmu_update, pointer, 1, 0, DOMID_SELF) == neg(EFAULT)


def test_a_hypercall_argument_in_the_upper_guest_slots_is_read(dom):
    """Slots 272-511 are the guest's: its higher-half kernel's own buffer works."""
    assert dom.guest["args"] >= 0xFFFF_8800_0000_0000
    assert mmu_update(dom, (l1e_of(dom, 0), phys(dom, va(dom, 1)) | P | A)) == 0


def test_platform_parameters_gives_a_64_bit_guest_xens_virt_start_in_8_bytes(dom):
    """xen_version(XENVER_platform_parameters = 5): {unsigned long virt_start}."""
    dom.write("args", b"\xff" * 16)
    assert hypercall(dom, HC.xen_version, 5, dom.guest["args"]) == 0
    assert u64s(dom.memory.read_phys(dom.addr("args"), 16)) == (0xFFFF_8000_0000_0000,
                                                                0xFFFF_FFFF_FFFF_FFFF)


# -- a kernel pvtool patched (it carries pvtool's notes) -------------------------------------
PVTOOL_NOTE = r"""
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 7, 0, 3
    .asciz "pvtool"
    .balign 4
    .popsection
"""  # an empty site_ranges note (docs/ABI.md, "ELF notes named pvtool")


def chain_l4(booted) -> int:
    """Scratch frames 0-1 an L4 (the kernel's slot 511 and slot 0 to frame 1) and an
    empty L3, both still mapped writable by the kernel; the L4's frame number."""
    booted.memory.write_phys(phys(booted, va(booted, 1)), bytes(PAGE))
    l4 = {511: kernel_slot(booted), 0: phys(booted, va(booted, 1)) | UPPER}
    booted.memory.write_phys(phys(booted, va(booted, 0)),
                             struct.pack("<512Q", *(l4.get(i, 0) for i in range(512))))
    return phys(booted, va(booted, 0)) // PAGE


def test_a_xen_guests_base_with_its_tables_mapped_writable_is_refused(dom):
    mfn = chain_l4(dom)
    assert mmuext(dom, (NEW_BASEPTR, mfn)) == neg(EINVAL)
    assert read_u64(dom, l1e_of(dom, 0)) & RW


def test_a_patched_kernels_base_gets_its_tables_mapped_read_only_instead(build64):
    patched = boot(build64("", handlers=PVTOOL_NOTE, bss=SCRATCH), ram=RAM)
    mfn = chain_l4(patched)
    assert mmuext(patched, (NEW_BASEPTR, mfn)) == 0
    assert patched.cpu.read(CR3) == mfn * PAGE
    for index in (0, 1):
        assert not read_u64(patched, l1e_of(patched, index)) & RW, index
    assert mmuext(patched, (PIN_L4, mfn)) == 0  # read-only now, so it may be pinned
    assert patched.domain.pagetables.typed[mfn] == 4
