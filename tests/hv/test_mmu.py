"""Xen's memory isolation: update_va_mapping, mmu_update, mmuext_op and writable page
tables (XEN-ABI.md; DESIGN.md, "The hypervisor").

Unit tests call a hypercall handler directly (pvtool.hv.hypercalls.call) on a booted
domain whose guest has not run, with arguments written into its memory; guest tests
make the same calls through the hypercall page and check what the CPU then sees.
Page tables are read by walking them here (harness.Booted.pte), not with pvtool's
walker.
"""

import struct

import pytest

from pvtool.abi.xen import DOMID_XEN
from pvtool.hv import layout
from pvtool.hv.errors import HypercallError
from pvtool.hv.frames import VALIDATED, PageType, page_type, type_count
from pvtool.machine.cpu import CR3, ESI
from pvtool.machine.stop import StopKind
from tests.hv.harness import RW, US, P, boot, hypercall
from tests.hv.xenguest import (
    DOMID_SELF,
    EFAULT,
    EINVAL,
    ENOSYS,
    HC,
    STALE_TRANSLATION,
    STALE_TRANSLATION_DATA,
    neg,
)

PAGE = 4096
A, D = 0x20, 0x40
PTE_RW = P | RW | A | D
PTE_RO = P | A
PDE_RW = P | RW | US | A | D
HYPERVISOR_BASE = 0xFC000000
GDT_VA = 0xFC400000  # pvtool.hv.layout.GDT, mapped read-only in every address space
NEW_BASEPTR, TLB_FLUSH_LOCAL, INVLPG_LOCAL = 5, 6, 7
SI_SHARED_INFO, SI_CONSOLE_MFN, SI_PT_BASE = 36, 52, 60

SCRATCH = r"""
frames: .skip 4096 * 8
buf:    .skip 4096
"""


def frame(booted, index):
    """The address (virtual = physical) of scratch page INDEX."""
    return booted.guest["frames"] + index * PAGE


def pt_base(booted):
    return booted.u32(booted.cpu.read(ESI) + SI_PT_BASE)


# -- update_va_mapping ------------------------------------------------------------------
def test_update_va_mapping_installs_a_valid_mapping(idle):
    va, target = frame(idle, 0), frame(idle, 1)
    assert hypercall(idle, HC.update_va_mapping, va, target | PTE_RW, 0, 2) == 0
    assert idle.pte(va) == target | PTE_RW


def test_update_va_mapping_can_unmap(idle):
    va = frame(idle, 0)
    assert hypercall(idle, HC.update_va_mapping, va, 0, 0, 2) == 0
    assert idle.pte(va) == 0


def test_the_cpu_sees_a_mapping_made_with_uvmf_invlpg_at_once(run_guest):
    """The guest reads page 0 (so its translation is cached), remaps it onto page 1
    with UVMF_INVLPG, and reads it again."""
    booted = run_guest(r"""
    mov dword ptr [frames], 0xaaaa0000
    mov dword ptr [frames + 4096], 0xbbbb1111
    mov eax, [frames]
    mov [before], eax
    mov ebx, offset frames
    mov ecx, offset frames + 4096 + 0x63
    xor edx, edx
    mov esi, UVMF_INVLPG
    HYPERCALL update_va_mapping
    mov [rc], eax
    mov eax, [frames]
    mov [after], eax
""", data="before: .long 0\nafter: .long 0\nrc: .long 0xffffffff", bss=SCRATCH)
    assert booted.u32("rc") == 0
    assert booted.u32("before") == 0xAAAA0000
    assert booted.u32("after") == 0xBBBB1111


def test_a_hypercall_pointer_follows_a_remapping_at_once(idle):
    """Guest memory keeps translations for hypercall pointers; an update_va_mapping
    makes it forget them, so the next hypercall reads the new frame."""
    va = frame(idle, 0)
    idle.write(va, b"old!")
    idle.write(frame(idle, 1), b"new!")
    assert hypercall(idle, HC.console_io, 0, 4, va) == 0
    assert hypercall(idle, HC.update_va_mapping, va, frame(idle, 1) | PTE_RW, 0, 0) == 0
    assert hypercall(idle, HC.console_io, 0, 4, va) == 0
    assert bytes(idle.output) == b"old!new!"


@pytest.mark.parametrize("target", ["beyond-ram", "gdt", "m2p"])
def test_update_va_mapping_refuses_a_frame_the_domain_does_not_own(idle, target):
    va = frame(idle, 0)
    before = idle.pte(va)
    address = {"beyond-ram": idle.machine.ram_size, "gdt": GDT_VA,
               "m2p": HYPERVISOR_BASE}[target]
    assert hypercall(idle, HC.update_va_mapping, va, address | PTE_RW, 0, 2) == neg(EINVAL)
    assert hypercall(idle, HC.update_va_mapping, va, address | PTE_RO, 0, 2) == neg(EINVAL)
    assert idle.pte(va) == before


def test_update_va_mapping_refuses_a_writable_mapping_of_a_page_table_in_use(idle):
    va = frame(idle, 0)
    before = idle.pte(va)
    l2 = pt_base(idle)
    l1 = idle.pde(va) & ~0xFFF
    assert hypercall(idle, HC.update_va_mapping, va, l2 | PTE_RW, 0, 2) == neg(EINVAL)
    assert hypercall(idle, HC.update_va_mapping, va, l1 | PTE_RW, 0, 2) == neg(EINVAL)
    assert idle.pte(va) == before
    # Read-only, a page table may be mapped (Xen allows it).
    assert hypercall(idle, HC.update_va_mapping, va, l1 | PTE_RO, 0, 2) == 0
    assert idle.pte(va) == l1 | PTE_RO


def frame_table_state(booted) -> tuple:
    """Every count and index the frame table and the validator keep, frame by frame
    over the domain's RAM, and the domain's roots and downgrades."""
    frames, validator = booted.domain.frames, booted.domain.pagetables.validator
    per_frame = tuple((frames.refs(mfn), frames.type_info(mfn), dict(frames.holders(mfn)),
                       set(frames.writable_at(mfn)))
                      for mfn in range(booted.domain.nr_pages))
    return per_frame, dict(validator.roots), dict(validator.downgraded)


@pytest.mark.parametrize("why", ["beyond-ram", "hypervisor-frame", "table-writable"])
def test_a_refused_l1_update_changes_no_count(idle, why):
    """An L1 entry update runs with no journal (Validator._update_l1e): a refusal must
    come before the old entry's references are dropped, leaving every count, index
    and the entry itself as they were. The entry replaced maps a frame writable, so
    a drop done too early would show in that frame's counts."""
    va = frame(idle, 0)
    assert hypercall(idle, HC.update_va_mapping, va, frame(idle, 1) | PTE_RW, 0, 2) == 0
    value = {"beyond-ram": idle.machine.ram_size | PTE_RW, "hypervisor-frame": GDT_VA | PTE_RO,
             "table-writable": pt_base(idle) | PTE_RW}[why]
    before = frame_table_state(idle)
    assert hypercall(idle, HC.update_va_mapping, va, value, 0, 2) == neg(EINVAL)
    assert frame_table_state(idle) == before
    assert idle.pte(va) == frame(idle, 1) | PTE_RW
    assert not idle.domain.frames.in_transaction


def test_an_accepted_l1_update_moves_the_references(idle):
    """The journal-free path's counts: the frame mapped before loses its general and
    writable references and its writable entry, the new one gains them."""
    va, old, new = frame(idle, 0), frame(idle, 1) // PAGE, frame(idle, 2) // PAGE
    frames = idle.domain.frames
    assert hypercall(idle, HC.update_va_mapping, va, old * PAGE | PTE_RW, 0, 2) == 0
    refs = frames.refs(old), frames.refs(new)
    types = type_count(frames.type_info(old)), type_count(frames.type_info(new))
    entry = idle.domain.memory.walk(va).pte_addr
    assert entry in frames.writable_at(old)
    assert hypercall(idle, HC.update_va_mapping, va, new * PAGE | PTE_RW, 0, 2) == 0
    assert (frames.refs(old), frames.refs(new)) == (refs[0] - 1, refs[1] + 1)
    assert (type_count(frames.type_info(old)), type_count(frames.type_info(new))) == \
        (types[0] - 1, types[1] + 1)
    assert entry not in frames.writable_at(old) and entry in frames.writable_at(new)


@pytest.mark.parametrize("va", [HYPERVISOR_BASE, GDT_VA, 0xFC410000, 0xFFFFF000])
def test_update_va_mapping_refuses_an_address_in_the_hypervisors_range(idle, va):
    target = frame(idle, 1)
    cr3 = idle.cpu.read(CR3)
    pdes_before = idle.memory.read_phys(cr3, PAGE)
    pte_before = idle.pte(va)
    assert hypercall(idle, HC.update_va_mapping, va, target | PTE_RW, 0, 2) == neg(EINVAL)
    assert idle.pte(va) == pte_before
    assert idle.memory.read_phys(cr3, PAGE) == pdes_before


def test_update_va_mapping_refuses_an_address_no_page_table_covers(idle):
    assert not idle.pde(0x40000000) & P
    assert hypercall(idle, HC.update_va_mapping, 0x40000000, frame(idle, 1) | PTE_RW,
                     0, 2) == neg(EINVAL)


def test_update_va_mapping_refuses_a_high_half_on_2_level_paging(idle):
    va = frame(idle, 0)
    before = idle.pte(va)
    assert hypercall(idle, HC.update_va_mapping, va, frame(idle, 1) | PTE_RW, 1, 2) \
        == neg(EINVAL)
    assert idle.pte(va) == before


def test_shared_info_is_mapped_with_update_va_mapping_and_shows_the_upcall_mask(run_guest):
    booted = run_guest(r"""
    MAP_SHARED_INFO shared_page
    mov [rc], eax
    movzx eax, byte ptr [shared_page + VCPU_upcall_mask]
    mov [mask_seen], eax
    mov byte ptr [shared_page + VCPU_upcall_mask], 0
""", data="rc: .long 0xffffffff\nmask_seen: .long 0xff", bss="shared_page: .skip 4096")
    assert booted.u32("rc") == 0
    assert booted.u32("mask_seen") == 1
    assert booted.domain.upcall_mask == 0  # the guest's store reached vcpu_info


# -- mmu_update ---------------------------------------------------------------------------
def mmu_requests(booted, *pairs, at="buf"):
    booted.write(at, b"".join(struct.pack("<QQ", ptr, val) for ptr, val in pairs))
    return booted.guest[at]


def test_mmu_update_writes_a_validated_entry_and_reports_it_done(idle):
    va = frame(idle, 0)
    ptr = idle.pte_address(va)
    reqs = mmu_requests(idle, (ptr, frame(idle, 2) | PTE_RW))
    done = frame(idle, 7)
    idle.write_u32s(done, 0xDEAD)
    assert hypercall(idle, HC.mmu_update, reqs, 1, done, DOMID_SELF) == 0
    assert idle.u32(done) == 1
    assert idle.pte(va) == frame(idle, 2) | PTE_RW


def test_mmu_update_refuses_a_slot_of_the_hypervisors_part_of_the_page_directory(idle):
    done = frame(idle, 7)
    slot_1009 = pt_base(idle) + 4 * 1009
    hv_pde = idle.u32(slot_1009)
    reqs = mmu_requests(idle, (slot_1009, frame(idle, 2) | PTE_RW))
    assert hypercall(idle, HC.mmu_update, reqs, 1, done, DOMID_SELF) == neg(EINVAL)
    assert idle.u32(done) == 0
    assert idle.u32(slot_1009) == hv_pde


def test_mmu_update_writes_ordinary_memory_unvalidated(idle):
    """A frame that is no page table in use is written as plain memory, as Xen's
    do_mmu_update does once page_lock fails (xen/arch/x86/mm.c): even a value no
    table would take (a frame past the domain's RAM, writable)."""
    done = frame(idle, 7)
    target = frame(idle, 3)
    idle.write_u32s(target, 0x1234, 0x5678)
    reqs = mmu_requests(idle, (target + 4, idle.machine.ram_size | PTE_RW))
    assert hypercall(idle, HC.mmu_update, reqs, 1, done, DOMID_SELF) == 0
    assert idle.u32(done) == 1
    assert (idle.u32(target), idle.u32(target + 4)) == (0x1234, idle.machine.ram_size | PTE_RW)


def test_mmu_update_refuses_a_high_half_into_ordinary_memory_too(idle):
    """A 2-level entry is 4 bytes: a value past them is -EINVAL whether the frame is a
    page table in use or ordinary memory (the hypercall fuzzer found the second case
    raising inside pvtool), and nothing is written."""
    done = frame(idle, 7)
    target = frame(idle, 3)
    idle.write_u32s(target, 0x1234, 0x5678)
    reqs = mmu_requests(idle, (target + 4, 1 << 32 | PTE_RW))
    assert hypercall(idle, HC.mmu_update, reqs, 1, done, DOMID_SELF) == neg(EINVAL)
    assert idle.u32(done) == 0
    assert (idle.u32(target), idle.u32(target + 4)) == (0x1234, 0x5678)


@pytest.mark.parametrize("value", ["page-directory-rw", "not-owned", "gdt"])
def test_mmu_update_refuses_an_entry_the_domain_may_not_have(idle, value):
    va = frame(idle, 0)
    before = idle.pte(va)
    val = {"page-directory-rw": pt_base(idle) | PTE_RW,
           "not-owned": idle.machine.ram_size | PTE_RO,
           "gdt": GDT_VA | PTE_RO}[value]
    reqs = mmu_requests(idle, (idle.pte_address(va), val))
    assert hypercall(idle, HC.mmu_update, reqs, 1, 0, DOMID_SELF) == neg(EINVAL)
    assert idle.pte(va) == before


def test_a_failing_mmu_update_batch_stops_at_the_bad_entry(idle):
    vas = [frame(idle, i) for i in range(3)]
    before = [idle.pte(v) for v in vas]
    reqs = mmu_requests(idle,
                        (idle.pte_address(vas[0]), frame(idle, 4) | PTE_RW),
                        (idle.pte_address(vas[1]), idle.machine.ram_size | PTE_RW),
                        (idle.pte_address(vas[2]), frame(idle, 5) | PTE_RW))
    done = frame(idle, 7)
    assert hypercall(idle, HC.mmu_update, reqs, 3, done, DOMID_SELF) == neg(EINVAL)
    assert idle.u32(done) == 1
    assert idle.pte(vas[0]) == frame(idle, 4) | PTE_RW
    assert [idle.pte(v) for v in vas[1:]] == before[1:]


@pytest.mark.parametrize("count", [1 << 20, 0xFFFFFFFF])
def test_mmu_update_refuses_a_huge_count(idle, count):
    va = frame(idle, 0)
    before = idle.pte(va)
    reqs = mmu_requests(idle, (idle.pte_address(va), frame(idle, 2) | PTE_RW))
    assert hypercall(idle, HC.mmu_update, reqs, count, 0, DOMID_SELF) == neg(EINVAL)
    assert idle.pte(va) == before


@pytest.mark.parametrize("reqs", [0x40000000, HYPERVISOR_BASE, 0xFC410000 - 8],
                         ids=["unmapped", "hypervisor", "straddling"])
def test_mmu_update_with_requests_it_cannot_read_is_efault(idle, reqs):
    assert hypercall(idle, HC.mmu_update, reqs, 1, 0, DOMID_SELF) == neg(EFAULT)


# -- mmuext_op NEW_BASEPTR ----------------------------------------------------------------
def build_tables(booted, *, extra_pdes=(), junk_hypervisor_slots=True):
    """A new hierarchy in the scratch frames: L2 in frame 0; its slot 0 an identity
    L1 (frame 1) over 0-4 MiB, writable everywhere (so it maps the L2, itself and
    frame 2 writable); slot 2 an L1 (frame 2) mapping 8 MiB -> frame 3 (writable)
    and 8 MiB + 4 KiB -> the L2 (writable). Returns the L2's frame number."""
    l2, l1_low, l1_high, data = (frame(booted, i) for i in range(4))
    booted.write(l1_low, struct.pack("<1024I", *(i * PAGE | PTE_RW for i in range(1024))))
    high = [0] * 1024
    high[0], high[1] = data | PTE_RW, l2 | PTE_RW
    booted.write(l1_high, struct.pack("<1024I", *high))
    pdes = [0] * 1024
    pdes[0], pdes[2] = l1_low | PDE_RW, l1_high | PDE_RW
    if junk_hypervisor_slots:
        pdes[1009] = data | PDE_RW  # a guest "L1" over the hypervisor's private area
        pdes[1023] = data | PDE_RW
    for slot, pde in extra_pdes:
        pdes[slot] = pde
    booted.write(l2, struct.pack("<1024I", *pdes))
    return l2 // PAGE


def mmuext(booted, *ops, done=None):
    booted.write("buf", b"".join(struct.pack("<3I", cmd, arg, 0) for cmd, arg in ops))
    done_ptr = 0 if done is None else done
    return hypercall(booted, HC.mmuext_op, booted.guest["buf"], len(ops), done_ptr,
                     DOMID_SELF)


def test_new_baseptr_validates_and_loads_the_new_tables(idle):
    old_cr3 = idle.cpu.read(CR3)
    hypervisor_pdes = idle.memory.read_phys(old_cr3 + 4 * 1008, 4 * 16)
    l2_mfn = build_tables(idle)
    done = frame(idle, 7)
    assert mmuext(idle, (NEW_BASEPTR, l2_mfn), done=done) == 0
    assert idle.u32(done) == 1
    new_cr3 = idle.cpu.read(CR3)
    assert new_cr3 == l2_mfn * PAGE
    # The hypervisor's slots are the hypervisor's: the guest's junk there is gone.
    assert idle.memory.read_phys(new_cr3 + 4 * 1008, 4 * 16) == hypervisor_pdes
    # Writable mappings of the new tables were made read-only; the rest kept.
    l2, l1_low, l1_high, data = (frame(idle, i) for i in range(4))
    downgraded = PTE_RW & ~RW
    for table in (l2, l1_low, l1_high):
        assert idle.pte(table) == table | downgraded, f"{table:#x} still writable"
    assert idle.pte(0x801000) == l2 | downgraded
    assert idle.pte(data) == data | PTE_RW
    assert idle.pte(0x800000) == data | PTE_RW
    # ... and the hypervisor's read-only area is still there, still read-only.
    assert idle.pte(GDT_VA) & (P | RW) == P
    assert idle.pte(GDT_VA) & ~0xFFF == GDT_VA


def test_after_new_baseptr_the_new_tables_are_the_ones_protected(idle):
    old_l2 = pt_base(idle)
    l2_mfn = build_tables(idle)
    assert mmuext(idle, (NEW_BASEPTR, l2_mfn)) == 0
    va = frame(idle, 5)
    assert hypercall(idle, HC.update_va_mapping, va, l2_mfn * PAGE | PTE_RW, 0, 2) \
        == neg(EINVAL)
    # The builder's tables are no longer in use: ordinary memory again.
    assert hypercall(idle, HC.update_va_mapping, va, old_l2 | PTE_RW, 0, 2) == 0


# The guest's mmuext_op of the one operation at `ops`, its result stored at `rc`.
MMUEXT_OPS = r"""
    MMUEXT_OP ops
    mov [rc], eax
"""


def test_a_guest_runs_on_the_tables_it_switched_to(build):
    booted = boot(build(MMUEXT_OPS + r"""
    mov eax, [0x800000]
    mov [seen], eax
""", data="rc: .long 0xffffffff\nseen: .long 0\nops: .long 5, 0, 0", bss=SCRATCH))
    l2_mfn = build_tables(booted)
    booted.write_u32s("ops", NEW_BASEPTR, l2_mfn, 0)
    booted.write_u32s(frame(booted, 3), 0x5EE0C0DE)
    booted.run()
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.u32("rc") == 0
    assert booted.u32("seen") == 0x5EE0C0DE
    assert booted.cpu.read(CR3) == l2_mfn * PAGE


@pytest.mark.parametrize("bad", ["l1-maps-foreign", "l2-points-outside-ram",
                                 "superpage", "l2-points-at-shared-info",
                                 "writable-self-map"])
def test_new_baseptr_refuses_an_invalid_hierarchy_and_keeps_the_old_one(idle, bad):
    cr3 = idle.cpu.read(CR3)
    shared_info = idle.u32(idle.cpu.read(ESI) + SI_SHARED_INFO)
    l2 = frame(idle, 0)
    extra = {
        "l1-maps-foreign": [],
        "l2-points-outside-ram": [(5, idle.machine.ram_size | PDE_RW)],
        "superpage": [(5, 0x01000000 | PDE_RW | 0x80)],
        "l2-points-at-shared-info": [(5, shared_info | PDE_RW)],
        "writable-self-map": [(5, l2 | PDE_RW)],
    }[bad]
    l2_mfn = build_tables(idle, extra_pdes=extra)
    if bad == "l1-maps-foreign":
        idle.write_u32s(frame(idle, 2) + 4 * 7, GDT_VA | PTE_RO)
    done = frame(idle, 7)
    assert mmuext(idle, (NEW_BASEPTR, l2_mfn), done=done) == neg(EINVAL)
    assert idle.u32(done) == 0
    assert idle.cpu.read(CR3) == cr3


@pytest.mark.parametrize("base", ["outside-ram", "shared-info", "hypervisor"])
def test_new_baseptr_refuses_a_base_that_is_not_the_domains_ram(idle, base):
    cr3 = idle.cpu.read(CR3)
    mfn = {"outside-ram": idle.machine.ram_size // PAGE,
           "shared-info": idle.u32(idle.cpu.read(ESI) + SI_SHARED_INFO) // PAGE,
           "hypervisor": GDT_VA // PAGE}[base]
    assert mmuext(idle, (NEW_BASEPTR, mfn)) == neg(EINVAL)
    assert idle.cpu.read(CR3) == cr3


def test_a_read_only_self_map_is_a_linear_page_table_and_leaves_the_rest_alone(idle):
    """Xen allows an L2 slot pointing back at the L2 read-only (a linear page table).
    It must not turn the directory into an "L1" whose entries get write-protected, nor
    make its hypervisor slots updatable."""
    l2 = frame(idle, 0)
    l2_mfn = build_tables(idle, extra_pdes=[(5, l2 | P | US | A)])
    assert mmuext(idle, (NEW_BASEPTR, l2_mfn)) == 0
    assert idle.pde(0) == frame(idle, 1) | PDE_RW  # still writable
    assert idle.pde(0x800000) == frame(idle, 2) | PDE_RW
    slot_1009 = l2 + 4 * 1009
    hv_pde = idle.u32(slot_1009)
    reqs = mmu_requests(idle, (slot_1009, frame(idle, 3) | PDE_RW))
    assert hypercall(idle, HC.mmu_update, reqs, 1, 0, DOMID_SELF) == neg(EINVAL)
    assert idle.u32(slot_1009) == hv_pde


def test_shared_info_can_never_become_a_page_table(run_guest):
    """Were shared_info accepted as an L1, the guest could write PTEs through its
    writable mapping of shared_info and map the hypervisor's GDT writable."""
    booted = run_guest(r"""
    mov eax, [start_info_ptr]
    mov eax, [eax + SI_shared_info]
    or eax, 0x67
    mov [frames + 5 * 4], eax        /* L2 slot 5 -> shared_info as an L1 */
    mov ebx, offset frames
    shr ebx, 12
    mov [ops + 4], ebx
""" + MMUEXT_OPS, data="rc: .long 0xffffffff\nops: .long 5, 0, 0", bss=SCRATCH)
    assert booted.u32("rc") == neg(EINVAL)


# -- TLB flushes ----------------------------------------------------------------------------
@pytest.mark.parametrize("cmd", [INVLPG_LOCAL, TLB_FLUSH_LOCAL], ids=["invlpg", "flush"])
def test_mmuext_tlb_operations_drop_a_stale_translation(build, cmd):
    """The guest caches the translation of page 0, the test changes its PTE behind
    the TLB's back, the guest sees the stale page, then flushes and sees the new one."""
    booted = boot(build(STALE_TRANSLATION + r"""
    mov dword ptr [ops + 4], offset frames
""" + MMUEXT_OPS + r"""
    mov eax, [frames]
    mov [after], eax
""", data=STALE_TRANSLATION_DATA + f"""
rc: .long 0xffffffff
ops: .long {cmd}, 0, 0
""", bss=SCRATCH))
    booted.remap_behind_the_tlb(frame(booted, 0), frame(booted, 1) | PTE_RW)
    booted.run()
    assert booted.u32("rc") == 0
    assert booted.u32("before") == 0xAAAA0000
    assert booted.u32("stale") == 0xAAAA0000  # the premise: the TLB kept the old page
    assert booted.u32("after") == 0xBBBB1111


def test_an_unknown_mmuext_command_is_enosys(idle):
    assert mmuext(idle, (99, 0)) == neg(ENOSYS)


def test_mmuext_op_refuses_a_huge_count(idle):
    assert hypercall(idle, HC.mmuext_op, idle.guest["buf"], 1 << 20, 0, DOMID_SELF) \
        == neg(EINVAL)


# -- writable page tables ------------------------------------------------------------------
PTWR = r"""
    mov ebx, offset trap_table
    HYPERCALL set_trap_table
    mov eax, [start_info_ptr]
    mov edi, [eax + SI_pt_base]        /* the page directory, mapped read-only */
    mov eax, offset frames
    shr eax, 22
    mov edx, [edi + eax * 4]
    and edx, ~0xfff                    /* the L1 mapping the scratch frames */
    mov [l1_va], edx
"""

PTWR_HANDLERS = r"""
pf_handler:
    inc dword ptr [faults]
    SHUTDOWN SHUTDOWN_crash
"""

PTWR_DATA = r"""
trap_table:
    TRAP 14, 0, pf_handler
    .long 0, 0
l1_va: .long 0
faults: .long 0
reached: .long 0
"""


def test_a_store_into_a_page_table_is_validated_and_emulated(run_guest):
    booted = run_guest(PTWR + r"""
    mov dword ptr [frames + 4096], 0x7777
    mov ecx, offset frames + 4096 + 0x63
    mov eax, offset frames
    shr eax, 12
    and eax, 0x3ff
    mov ebx, [l1_va]
    mov [ebx + eax * 4], ecx          /* frames[0] -> frames[1] */
    mov eax, [frames]
    mov [seen], eax
""", handlers=PTWR_HANDLERS, data=PTWR_DATA + "seen: .long 0", bss=SCRATCH)
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.u32("faults") == 0
    assert booted.u32("seen") == 0x7777
    assert booted.pte(frame(booted, 0)) == frame(booted, 1) | PTE_RW
    assert booted.machine.exits["ptwr"] == 1


@pytest.mark.parametrize("store", ["foreign-frame", "hypervisor-slot", "writable-self-map"])
def test_a_store_of_an_entry_the_domain_may_not_have_does_not_take_effect(run_guest, store):
    """Mapping a frame of the hypervisor, replacing the hypervisor's slot of the page
    directory, or mapping the page directory writable through itself: refused (the
    domain crashes or gets the fault; either way the entry is not written)."""
    code = {
        "foreign-frame": r"""
    mov eax, offset frames
    shr eax, 12
    and eax, 0x3ff
    mov ebx, [l1_va]
    lea edi, [ebx + eax * 4]
    mov ecx, 0xfc400063
""",
        "hypervisor-slot": r"""
    lea edi, [edi + 1009 * 4]
    mov ecx, offset frames + 0x67
""",
        "writable-self-map": r"""
    mov ecx, edi
    or ecx, 0x67
    lea edi, [edi + 5 * 4]
""",
    }[store]
    booted = run_guest(PTWR + code + r"""
    mov [target], edi
    mov eax, [edi]
    mov [before], eax
    mov [edi], ecx
    mov dword ptr [reached], 1
""", handlers=PTWR_HANDLERS,
        data=PTWR_DATA + "target: .long 0\nbefore: .long 0", bss=SCRATCH)
    assert booted.u32("target") != 0
    assert booted.u32(booted.u32("target")) == booted.u32("before")
    assert booted.u32("reached") == 0
    stop = booted.machine.stop
    assert stop.kind is StopKind.CRASH or stop.code == 3  # crashed, or its #PF handler


def test_a_store_of_a_directory_entry_validates_the_new_table_and_protects_it(run_guest):
    """The kernel points an empty slot of its page directory at a fresh frame: the
    frame becomes an L1 (its entries validated, its writable mappings made read-only),
    and the kernel's later stores into it are validated one by one."""
    booted = run_guest(PTWR + r"""
    mov dword ptr [frames + 5 * 4096], 0x55555555
    mov dword ptr [frames + 6 * 4096], 0x66666666
    mov eax, offset frames + 5 * 4096 + 0x63
    mov [frames + 4 * 4096], eax      /* entry 0 of the new table: scratch frame 5 */
    mov eax, offset frames + 4 * 4096 + 0x67
    mov [edi + 3 * 4], eax            /* slot 3 (12 MiB) -> the new table */
    mov eax, [0xc00000]
    mov [seen], eax
    mov dword ptr [frames + 4 * 4096 + 4], offset frames + 6 * 4096 + 0x63
    mov eax, [0xc01000]
    mov [seen + 4], eax
""", handlers=PTWR_HANDLERS, data=PTWR_DATA + "seen: .long 0, 0", bss=SCRATCH)
    table = frame(booted, 4)
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.u32s("seen", 2) == (0x55555555, 0x66666666)
    assert booted.pde(0xC00000) == table | PDE_RW
    assert booted.pte(table) & (P | RW) == P  # the new table is read-only now
    assert booted.machine.exits["ptwr"] == 2


def test_a_store_of_a_directory_entry_over_an_invalid_table_is_refused(run_guest):
    booted = run_guest(PTWR + r"""
    mov dword ptr [frames + 4 * 4096 + 8], 0xfc400063   /* the GDT frame, writable */
    mov eax, offset frames + 4 * 4096 + 0x67
    mov [edi + 3 * 4], eax
    mov dword ptr [reached], 1
""", handlers=PTWR_HANDLERS, data=PTWR_DATA, bss=SCRATCH)
    assert not booted.pde(0xC00000) & P
    assert booted.u32("reached") == 0
    assert booted.pte(frame(booted, 4)) & (P | RW) == P | RW  # still ordinary memory


PIN_L2_TABLE = 1


def test_a_store_linking_a_page_directory_as_a_page_table_is_refused(idle):
    """Type confusion: a frame pinned as an L2, linked by a kernel's own store into its
    page directory as an L1, would read its directory entries as writable mappings of
    page tables. One frame, one type (Xen's get_page_type): the store is refused."""
    l2_mfn = build_tables(idle)
    assert mmuext(idle, (NEW_BASEPTR, l2_mfn)) == 0
    other = frame(idle, 4)  # an empty page directory, mapped read-only so it may be pinned
    idle.write(other, bytes(PAGE))
    assert hypercall(idle, HC.update_va_mapping, other, other | PTE_RO, 0, 2) == 0
    assert mmuext(idle, (PIN_L2_TABLE, other // PAGE)) == 0
    tables = idle.domain.pagetables
    assert tables.typed[other // PAGE] == 2
    slot = 5
    with pytest.raises(HypercallError, match="page directory"):
        tables.write_entry(l2_mfn * PAGE + 4 * slot, other | PDE_RW)
    assert idle.u32(frame(idle, 0) + 4 * slot) == 0  # nothing was written


def test_a_frame_becoming_a_page_table_loses_every_writable_mapping(idle):
    """The data frame is mapped writable twice in the new base (at its own address by
    the identity L1, at 8 MiB by the other L1) and by the builder's tables, which no
    base holds any more. When a kernel's store links it as an L1, every one of those
    mappings is made read-only, found where the frame table recorded them."""
    l2_mfn = build_tables(idle)
    assert mmuext(idle, (NEW_BASEPTR, l2_mfn)) == 0
    builder_cr3 = pt_base(idle)
    data = frame(idle, 3)
    mappings = [idle.pte_address(data), frame(idle, 2), idle.pte_address(data, builder_cr3)]
    assert [idle.u32(m) for m in mappings] == [data | PTE_RW] * 3
    idle.domain.pagetables.write_entry(l2_mfn * PAGE + 4 * 6, data | PDE_RW)
    assert [idle.u32(m) for m in mappings] == [data | (PTE_RW & ~RW)] * 3
    assert idle.domain.frames.writable_at(data // PAGE) == ()
    assert idle.domain.pagetables.typed[data // PAGE] == 1


# -- the frame table: counts instead of scans -------------------------------------------
PIN_L1_TABLE, UNPIN_TABLE = 0, 4


def type_of(booted, address):
    """(type, type count, validated) of the frame at ADDRESS, from the frame table."""
    info = booted.domain.frames.type_info(address // PAGE)
    return page_type(info), type_count(info), bool(info & VALIDATED)


def second_directory(booted, l2_mfn):
    """Scratch frame 4 as another page directory sharing slot 0 (the identity L1) with
    the one at L2_MFN."""
    booted.write_u32s(frame(booted, 4), booted.u32(l2_mfn * PAGE))
    return frame(booted, 4) // PAGE


def test_a_table_two_bases_share_is_validated_once_and_counted_twice(idle):
    """Switching between two address spaces that share an L1 takes and drops type
    references: the L1 is held by both directories, the directory left keeps its
    validation, and going back to it reads none of its tables again (an entry changed
    behind the validator's back, which no guest can do, is not even looked at)."""
    a = build_tables(idle)
    b = second_directory(idle, a)
    l1_low = frame(idle, 1)
    assert mmuext(idle, (NEW_BASEPTR, a), (NEW_BASEPTR, b)) == 0
    assert idle.cpu.read(CR3) == b * PAGE
    assert type_of(idle, l1_low) == (1, 2, True)
    assert idle.domain.frames.holders(l1_low // PAGE) == {a: 1, b: 1}
    assert type_of(idle, a * PAGE) == (2, 0, True)  # no base: kept, write-protected
    assert idle.pte(a * PAGE) & (P | RW) == P
    idle.memory.write_u32(frame(idle, 2) + 4 * 9, GDT_VA | PTE_RW)  # not the guest's doing
    assert mmuext(idle, (NEW_BASEPTR, a)) == 0
    assert idle.cpu.read(CR3) == a * PAGE
    assert type_of(idle, a * PAGE) == (2, 1, True)
    assert type_of(idle, b * PAGE) == (2, 0, True)


def test_a_pinned_table_is_held_until_unpinned_and_then_freed_on_demand(idle):
    """Pinning a directory no base uses takes a reference (the builder's tables, which
    no base holds either, give up their writable mapping of it on the way); unpinned,
    it stays validated until the guest asks to map it writable, which devalidates it."""
    l2_mfn = build_tables(idle)
    assert mmuext(idle, (NEW_BASEPTR, l2_mfn)) == 0
    other = frame(idle, 5)
    assert hypercall(idle, HC.update_va_mapping, other, other | PTE_RO, 0, 2) == 0
    assert mmuext(idle, (PIN_L2_TABLE, other // PAGE)) == 0
    assert type_of(idle, other) == (2, 1, True)
    assert hypercall(idle, HC.update_va_mapping, other, other | PTE_RW, 0, 2) == neg(EINVAL)
    assert mmuext(idle, (UNPIN_TABLE, other // PAGE)) == 0
    assert type_of(idle, other) == (2, 0, True)
    assert mmuext(idle, (UNPIN_TABLE, other // PAGE)) == neg(EINVAL)
    assert hypercall(idle, HC.update_va_mapping, other, other | PTE_RW, 0, 2) == 0
    assert type_of(idle, other) == (PageType.WRITABLE, 1, False)
    assert other // PAGE not in idle.domain.pagetables.typed


def test_an_l1_linked_from_two_slots_is_in_use_until_both_let_go(idle):
    """mmu_update of directory entries: each link is a type reference; while one is
    left the L1 is a page table in use (no writable mapping of it), after the last it
    may be mapped writable again."""
    l2_mfn = build_tables(idle)
    assert mmuext(idle, (NEW_BASEPTR, l2_mfn)) == 0
    l1_high = frame(idle, 2)
    slot = [l2_mfn * PAGE + 4 * n for n in (2, 3)]
    assert hypercall(idle, HC.mmu_update, mmu_requests(idle, (slot[1], l1_high | PDE_RW)),
                     1, 0, DOMID_SELF) == 0
    assert type_of(idle, l1_high) == (1, 2, True)
    assert idle.domain.frames.holders(l1_high // PAGE) == {l2_mfn: 2}
    va = frame(idle, 6)
    for link in slot:
        assert hypercall(idle, HC.update_va_mapping, va, l1_high | PTE_RW, 0, 2) \
            == neg(EINVAL)
        assert hypercall(idle, HC.mmu_update, mmu_requests(idle, (link, 0)), 1, 0,
                         DOMID_SELF) == 0
    assert type_of(idle, l1_high) == (1, 0, True)
    assert hypercall(idle, HC.update_va_mapping, va, l1_high | PTE_RW, 0, 2) == 0
    assert idle.pte(va) == l1_high | PTE_RW


def test_a_table_nothing_holds_may_become_another_type_and_a_live_one_may_not(idle):
    """One frame, one type while in use; once unlinked it is free to be pinned at
    another level (Xen's get_page_type at type count zero)."""
    l2_mfn = build_tables(idle)
    assert mmuext(idle, (NEW_BASEPTR, l2_mfn)) == 0
    table = frame(idle, 6)
    assert hypercall(idle, HC.update_va_mapping, table, table | PTE_RO, 0, 2) == 0
    link = l2_mfn * PAGE + 4 * 3
    assert hypercall(idle, HC.mmu_update, mmu_requests(idle, (link, table | PDE_RW)), 1, 0,
                     DOMID_SELF) == 0
    assert mmuext(idle, (PIN_L2_TABLE, table // PAGE)) == neg(EINVAL)
    assert mmuext(idle, (NEW_BASEPTR, table // PAGE)) == neg(EINVAL)
    assert idle.cpu.read(CR3) == l2_mfn * PAGE
    assert hypercall(idle, HC.mmu_update, mmu_requests(idle, (link, 0)), 1, 0,
                     DOMID_SELF) == 0
    assert mmuext(idle, (PIN_L2_TABLE, table // PAGE)) == 0
    assert type_of(idle, table) == (2, 1, True)


def test_frames_belong_to_a_domain_by_its_id(idle):
    """Ownership is the frame table's, by domain id: a frame given to another domain
    is no longer this one's to map, to make a page table of, or to load as a base."""
    frames, domain = idle.domain.frames, idle.domain
    va, mine, theirs = frame(idle, 0), frame(idle, 1), frame(idle, 2)
    assert frames.owner(theirs // PAGE) == domain.domid
    frames.assign(domain.domid + 1, theirs // PAGE, 1)
    assert frames.owner(theirs // PAGE) == domain.domid + 1
    assert not domain.owns_frame(theirs // PAGE) and domain.owns_frame(mine // PAGE)
    assert hypercall(idle, HC.update_va_mapping, va, theirs | PTE_RO, 0, 2) == neg(EINVAL)
    assert mmuext(idle, (NEW_BASEPTR, theirs // PAGE)) == neg(EINVAL)
    assert mmuext(idle, (PIN_L1_TABLE, theirs // PAGE)) == neg(EINVAL)
    assert hypercall(idle, HC.update_va_mapping, va, mine | PTE_RO, 0, 2) == 0
    assert frames.owner(layout.SHARED_INFO // PAGE) == DOMID_XEN
    assert domain.owns_frame(layout.SHARED_INFO // PAGE)  # shared with the domain


def test_a_refused_base_changes_no_count_and_no_entry(idle):
    """The new hierarchy is refused at its last entry, after its tables were typed and
    writable mappings of them made read-only: all of it is undone."""
    before = frame_table_state(idle)
    l2_mfn = build_tables(idle)
    memory = idle.memory.read_phys(frame(idle, 0), 3 * PAGE)
    builder = idle.memory.read_phys(pt_base(idle), 2 * PAGE)
    idle.write_u32s(frame(idle, 2) + 4 * 1023, GDT_VA | PTE_RO)
    assert mmuext(idle, (NEW_BASEPTR, l2_mfn)) == neg(EINVAL)
    assert frame_table_state(idle) == before
    assert idle.memory.read_phys(frame(idle, 0), 2 * PAGE) == memory[:2 * PAGE]
    assert idle.memory.read_phys(pt_base(idle), 2 * PAGE) == builder


def test_frames_the_hypervisor_writes_can_never_become_page_tables(idle):
    """The console ring is written by the console backend: neither a pin nor a kernel's
    store may make it a page table, even once the guest maps it read-only."""
    info = idle.cpu.read(ESI)
    ring = idle.u32(info + SI_CONSOLE_MFN) * PAGE
    assert hypercall(idle, HC.update_va_mapping, ring, ring | PTE_RO, 0, 2) == 0
    assert mmuext(idle, (PIN_L1_TABLE, ring // PAGE)) == neg(EINVAL)
    with pytest.raises(HypercallError, match="mapped writable"):
        idle.domain.pagetables.write_entry(pt_base(idle) + 4 * 40, ring | PDE_RW)
    assert idle.u32(pt_base(idle) + 4 * 40) == 0


def test_a_table_no_base_holds_is_devalidated_before_the_kernels_store_lands(build):
    """The kernel leaves the builder's tables for its own, in which its identity map
    holds the builder's page table read-only (it was one), then reuses that frame as
    data: the store faults once, the frame stops being a page table, the mapping gets
    its write access back, and the store lands as written (it is no valid PTE, and is
    not validated as one)."""
    booted = boot(build(PTWR + MMUEXT_OPS + r"""
    mov eax, [old_l1]
    mov dword ptr [eax], 0xffffffff
    mov dword ptr [reached], 1
""", handlers=PTWR_HANDLERS, data=PTWR_DATA + "rc: .long 1\nold_l1: .long 0\n"
        "ops: .long 5, 0, 0", bss=SCRATCH))
    old_l1 = booted.pde(frame(booted, 0)) & ~0xFFF
    l2_mfn = build_tables(booted)
    booted.write_u32s("ops", NEW_BASEPTR, l2_mfn, 0)
    booted.write_u32s("old_l1", old_l1)
    booted.run()
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.u32("rc") == 0 and booted.u32("reached") == 1
    assert booted.u32("faults") == 0
    assert booted.machine.exits["ptwr"] == 1  # the one fault that gave write access back
    assert booted.u32(old_l1) == 0xFFFFFFFF
    assert booted.pte(old_l1) == old_l1 | PTE_RW
    assert old_l1 // PAGE not in booted.domain.pagetables.typed
