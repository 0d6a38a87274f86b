"""PAE domains (today's 32-bit Xen, XEN-ABI.md "Boot"): the builder's 3-level layout and
the validation of PAE page tables: every refusal names Xen's error.

The tables are read here with the test's own arithmetic (8-byte entries, a 4-entry L3,
512-entry L2s and L1s), not with pvtool's walker.
"""

import struct

import pytest

from pvtool.hv.frames import VALIDATED, PageType, page_type, type_count
from pvtool.hv.hypercalls import call
from pvtool.machine.cpu import CR3, CR4, ESI
from pvtool.machine.stop import StopKind
from tests.hv.harness import RW, P, boot
from tests.hv.xenguest import DOMID_SELF, EINVAL, HC, PAE_NOTES, neg

PAGE = 4096
A = 0x20
NEW_BASEPTR = 5
CR4_PAE = 1 << 5
XEN_PAE_START = 0xF5800000  # Xen's range on PAE; L2 slots 428-511 under L3 slot 3
SI_SHARED_INFO, SI_PT_BASE, SI_NR_PT_FRAMES = 36, 60, 64


def q(booted, address: int) -> int:
    return struct.unpack("<Q", booted.memory.read_phys(address, 8))[0]


def l3e(booted, slot: int) -> int:
    return q(booted, (booted.cpu.read(CR3) & ~0x1F) + 8 * slot)


def l2e(booted, vaddr: int) -> int:
    return q(booted, (l3e(booted, vaddr >> 30) & ~0xFFF) + 8 * ((vaddr >> 21) & 511))


def pte_address(booted, vaddr: int) -> int:
    return (l2e(booted, vaddr) & 0xFFFFF000) + 8 * ((vaddr >> 12) & 511)


def pte(booted, vaddr: int) -> int:
    return q(booted, pte_address(booted, vaddr))


@pytest.fixture
def pae_guest(build):
    def _build(text: str = "", **parts):
        return build(text, notes=PAE_NOTES, **parts)
    return _build


def test_a_pae_kernel_boots_with_the_32p_magic_cr4_pae_and_read_only_tables(pae_guest):
    booted = boot(pae_guest(""))
    info = booted.memory.read_phys(booted.cpu.read(ESI), 80)
    assert info[:32] == b"xen-3.0-x86_32p".ljust(32, b"\0")
    assert booted.cpu.read(CR4) & CR4_PAE
    pt_base, nr_pt = struct.unpack_from("<II", info, SI_PT_BASE)
    assert booted.cpu.read(CR3) == pt_base  # VIRT_BASE 0: virtual = physical
    # L3, the L2 of GiB 0, the L2 under slot 3 (the hypervisor's), two L1s (4 MiB).
    assert nr_pt == 5
    for frame in range(nr_pt):
        entry = pte(booted, pt_base + frame * PAGE)
        assert entry & P and not entry & RW, f"page-table frame {frame} is writable"
    # L3 entries carry no flag but present.
    assert l3e(booted, 0) & 0xFFF == P and l3e(booted, 3) & 0xFFF == P
    # Xen's range: the read-only machine-to-phys table at 0xF5800000 (slot 428).
    m2p = pte(booted, XEN_PAE_START)
    assert m2p & P and not m2p & RW
    assert struct.unpack("<I", booted.memory.read_virt(XEN_PAE_START + 4 * 5, 4))[0] == 5
    booted.run()
    assert booted.machine.stop.reason == "shutdown (poweroff)"


def test_update_va_mapping_takes_the_high_half_and_maps_shared_info(pae_guest):
    text = """
    MAP_SHARED_INFO shinfo
    mov [result], eax
    mov eax, [shinfo + VCPU_upcall_mask]
    mov [mask], eax
    /* pte_hi set: a frame above 4 GiB, which the domain does not own */
    mov ebx, offset scratch
    mov ecx, 0x1063
    mov edx, 1
    mov esi, UVMF_INVLPG
    HYPERCALL update_va_mapping
    mov [high], eax
    """
    booted = boot(pae_guest(text, data="result: .long 1\nmask: .long 0\nhigh: .long 0",
                            bss="shinfo: .skip 4096\nscratch: .skip 4096"))
    booted.run()
    assert booted.u32("result") == 0
    assert booted.u32("mask") & 0xFF == 1  # the upcall mask starts at 1
    assert booted.u32("high") == neg(EINVAL)


MMU_ASM = """
    .macro MMU_UPDATE ptr_lo, val_lo, val_hi=0
    mov dword ptr [req], \\ptr_lo
    mov dword ptr [req + 4], 0
    mov dword ptr [req + 8], \\val_lo
    mov dword ptr [req + 12], \\val_hi
    mov ebx, offset req
    mov ecx, 1
    xor edx, edx
    mov esi, 0x7ff0
    HYPERCALL mmu_update
    .endm

    .macro MMUEXT cmd, arg1
    mov dword ptr [op], \\cmd
    mov dword ptr [op + 4], \\arg1
    MMUEXT_OP op
    .endm

    .macro REMAP va, pte_lo, pte_hi=0
    mov ebx, offset \\va
    mov ecx, \\pte_lo
    mov edx, \\pte_hi
    mov esi, UVMF_INVLPG
    HYPERCALL update_va_mapping
    .endm
"""
# The machine address of the PAE L1 entry mapping EBX, walked by hand from pt_base.
PTE_OF = """
pte_of:
    mov eax, [start_info_ptr]
    mov eax, [eax + SI_pt_base]
    mov ecx, ebx
    shr ecx, 30
    mov eax, [eax + 8 * ecx]
    and eax, 0xfffff000
    mov ecx, ebx
    shr ecx, 21
    and ecx, 511
    mov eax, [eax + 8 * ecx]
    and eax, 0xfffff000
    mov ecx, ebx
    shr ecx, 12
    and ecx, 511
    lea eax, [eax + 8 * ecx]
    ret
"""
MMU_DATA = "req: .long 0, 0, 0, 0\nop: .long 0, 0, 0\nresults: .fill 8, 4, 0x5a5a5a5a"
PIN_L1, UNPIN = 0, 4


def test_isolation_refusals_on_pae_are_xens_einval(pae_guest):
    text = MMU_ASM + """
    /* a frame the domain does not own (RAM is 16 MiB) */
    REMAP scratch, 0x01000063
    mov [results], eax
    /* the hypervisor's own machine frames (the machine-to-phys table) */
    REMAP scratch, 0xfc000063
    mov [results + 4], eax
    /* an L3 entry with PCD: Xen's mask for 32-bit PV L3s refuses it */
    mov edi, [start_info_ptr]
    mov edi, [edi + SI_pt_base]
    mov eax, [edi]
    or eax, 0x10
    MMU_UPDATE edi, eax
    mov [results + 8], eax
    /* slot 428 of the L2 under L3 slot 3: the hypervisor's */
    mov eax, [edi + 24]
    and eax, 0xfffff000
    add eax, 428 * 8
    MMU_UPDATE eax, 0
    mov [results + 12], eax
    /* the page tables themselves, writable */
    mov eax, edi
    or eax, 0x63
    mov ebx, offset scratch
    mov ecx, eax
    xor edx, edx
    mov esi, UVMF_INVLPG
    HYPERCALL update_va_mapping
    mov [results + 16], eax
    """
    booted = boot(pae_guest(text, data=MMU_DATA, bss="scratch: .skip 4096"))
    booted.run()
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.u32s("results", 5) == (neg(EINVAL),) * 5


def test_a_pinned_table_is_never_writable_and_loses_its_type_when_unpinned(pae_guest):
    mfn = "mov eax, offset table\n    shr eax, 12\n"
    pte = "mov eax, offset table\n    or eax, {flags}\n"
    text = MMU_ASM + f"""
    /* still mapped writable: it cannot become a page table */
    {mfn}    MMUEXT {PIN_L1}, eax
    mov [results], eax
    {pte.format(flags=0x21)}    REMAP table, eax
    {mfn}    MMUEXT {PIN_L1}, eax
    mov [results + 4], eax
    {pte.format(flags=0x63)}    REMAP table, eax
    mov [results + 8], eax
    {mfn}    MMUEXT {PIN_L1}, eax
    mov [results + 12], eax
    {mfn}    MMUEXT {UNPIN}, eax
    mov [results + 16], eax
    {pte.format(flags=0x63)}    REMAP table, eax
    mov [results + 20], eax
    {mfn}    MMUEXT {UNPIN}, eax
    mov [results + 24], eax
    """
    booted = boot(pae_guest(text, data=MMU_DATA, bss="table: .skip 4096"))
    booted.run()
    assert booted.u32s("results", 7) == (
        neg(EINVAL),  # pin while mapped writable
        0,  # pinned once read-only
        neg(EINVAL),  # a writable mapping of a pinned table
        neg(EINVAL),  # pinned twice
        0,  # unpinned
        0,  # no longer a table: writable again
        neg(EINVAL),  # not pinned
    )


def test_mmu_update_writes_a_64_bit_l1_entry(pae_guest):
    text = MMU_ASM + """
    mov ebx, offset alias
    call pte_of
    mov edi, eax
    mov edx, offset target
    or edx, 0x63
    MMU_UPDATE edi, edx, 0
    mov [results], eax
    mov eax, [alias]
    mov [results + 4], eax
    mov edx, offset target
    or edx, 0x63
    MMU_UPDATE edi, edx, 0x10
    mov [results + 8], eax
    """
    booted = boot(pae_guest(text, handlers=PTE_OF,
                            data=MMU_DATA + "\n.balign 4096\ntarget: .long 0x7a7a7a7a",
                            bss="alias: .skip 4096"))
    booted.run()
    assert booted.u32s("results", 3) == (0, 0x7A7A7A7A, neg(EINVAL))
    assert pte(booted, booted.guest["alias"]) & ~0xFFF == booted.guest["target"]


def test_new_baseptr_switches_to_a_validated_l3_and_the_old_tables_lose_their_type(pae_guest):
    text = MMU_ASM + """
    mov eax, [new_l3_mfn]
    MMUEXT 5, eax
    mov [results], eax
    /* the old L3 is no page table now: it may be mapped writable */
    mov eax, [start_info_ptr]
    mov eax, [eax + SI_pt_base]
    or eax, 0x63
    REMAP scratch, eax
    mov [results + 4], eax
    """
    guest = pae_guest(text, data=MMU_DATA + "\nnew_l3_mfn: .long 0",
                      bss="scratch: .skip 4096")
    booted = boot(guest)
    old = booted.cpu.read(CR3)
    new_l3 = 8 << 20  # free RAM, above the boot mapping
    l3 = [q(booted, old + 8 * slot) for slot in range(4)]
    for slot, entry in enumerate(l3):
        if entry & P:
            copy = new_l3 + (1 + slot) * PAGE
            booted.memory.write_phys(copy, booted.memory.read_phys(entry & ~0xFFF, PAGE))
            l3[slot] = copy | P
    booted.memory.write_phys(new_l3, struct.pack("<4Q", *l3))
    booted.write_u32s("new_l3_mfn", new_l3 >> 12)
    booted.run()
    assert booted.u32s("results", 2) == (0, 0)
    assert booted.cpu.read(CR3) == new_l3
    assert booted.machine.stop.reason == "shutdown (poweroff)"


# -- the frame table: counts instead of revalidating the tree ---------------------------
def hypercall(booted, number, *args):
    domain = booted.domain
    return call(domain, domain.vcpu, number, tuple(args) + (0,) * (5 - len(args))) \
        & 0xFFFFFFFF


def mmu_update(booted, ptr: int, val: int) -> int:
    booted.write("scratch", struct.pack("<QQ", ptr, val))
    return hypercall(booted, HC.mmu_update, booted.guest["scratch"], 1, 0, DOMID_SELF)


def new_baseptr(booted, mfn: int) -> int:
    booted.write("scratch", struct.pack("<3I", NEW_BASEPTR, mfn, 0))
    return hypercall(booted, HC.mmuext_op, booted.guest["scratch"], 1, 0, DOMID_SELF)


def read_only(booted, address: int) -> None:
    """Map scratch frame ADDRESS read-only where it lies (a page table cannot be
    writable anywhere)."""
    assert hypercall(booted, HC.update_va_mapping, address, address | P | A, 0, 2) == 0


def type_of(booted, address):
    info = booted.domain.frames.type_info(address // PAGE)
    return page_type(info), type_count(info), bool(info & VALIDATED)


@pytest.fixture
def idle_pae(pae_guest):
    return boot(pae_guest("", bss="scratch: .skip 4096\ntables: .skip 4096 * 4"))


def test_an_l3_entry_change_takes_and_drops_the_references_of_that_entry_only(idle_pae):
    booted = idle_pae
    l3 = booted.cpu.read(CR3)
    gib0 = l3e(booted, 0) & ~0xFFF
    fresh = booted.guest["tables"]
    read_only(booted, fresh)
    assert mmu_update(booted, l3 + 8, fresh | P) == 0
    assert type_of(booted, fresh) == (2, 1, True)
    assert booted.domain.frames.holders(fresh // PAGE) == {l3 // PAGE: 1}
    assert type_of(booted, gib0) == (2, 1, True)  # the rest of the tree untouched
    xen_l2 = l3e(booted, 3) & ~0xFFF
    assert mmu_update(booted, l3 + 16, xen_l2 | P) == neg(EINVAL)  # one L3 only
    assert mmu_update(booted, l3 + 8, 0) == 0
    assert type_of(booted, fresh) == (2, 0, True)
    assert hypercall(booted, HC.update_va_mapping, fresh, fresh | 0x63, 0, 2) == 0
    assert type_of(booted, fresh) == (PageType.WRITABLE, 1, False)


def test_the_hypervisors_l2_serves_one_l3_and_is_freed_from_one_no_base_holds(idle_pae):
    """L3 B reuses the builder's L2 under slot 3: refused while the builder's L3 is the
    base. L3 C, with a copy of that L2 of its own, becomes the base and shares the
    builder's L2 of GiB 0 (two references); then B is accepted: the builder's L3, which
    nothing holds any more, is devalidated and lets go of its L2s (Xen would have done
    so when C became the base)."""
    booted = idle_pae
    a = booted.cpu.read(CR3)
    gib0, xen_l2 = (l3e(booted, slot) & ~0xFFF for slot in (0, 3))
    b, c, xen_copy = (booted.guest["tables"] + n * PAGE for n in range(3))
    for frame in (b, c, xen_copy):
        read_only(booted, frame)
    booted.memory.write_phys(xen_copy, booted.memory.read_phys(xen_l2, PAGE))
    booted.memory.write_phys(b, struct.pack("<4Q", gib0 | P, 0, 0, xen_l2 | P))
    booted.memory.write_phys(c, struct.pack("<4Q", gib0 | P, 0, 0, xen_copy | P))
    assert new_baseptr(booted, b // PAGE) == neg(EINVAL)
    assert new_baseptr(booted, c // PAGE) == 0
    assert type_of(booted, gib0) == (2, 2, True)
    assert type_of(booted, a) == (3, 0, True)
    assert new_baseptr(booted, b // PAGE) == 0
    assert booted.cpu.read(CR3) == b
    assert a // PAGE not in booted.domain.pagetables.typed
    assert booted.domain.frames.holders(gib0 // PAGE) == {b // PAGE: 1, c // PAGE: 1}
    assert type_of(booted, xen_l2) == (2, 1, True)


def test_a_kernels_store_into_half_of_a_pae_entry_is_merged_and_validated(pae_guest):
    """Writable page tables with 8-byte entries: a 4-byte store into the low half of an
    L1 entry (mapped read-only, as the builder maps page tables) is emulated on the
    whole entry; one into the high half that names a frame above 4 GiB is refused."""
    text = """
    mov ebx, offset alias
    call pte_of
    mov edi, eax
    mov edx, offset target
    or edx, 0x63
    mov [edi], edx
    mov eax, [alias]
    mov [results], eax
    mov dword ptr [edi + 4], 0x10
    mov dword ptr [results + 4], 1
    """
    booted = boot(pae_guest(text, handlers=PTE_OF,
                            data=MMU_DATA + "\n.balign 4096\ntarget: .long 0x7a7a7a7a",
                            bss="alias: .skip 4096"))
    booted.run()
    assert booted.u32s("results", 2) == (0x7A7A7A7A, 0x5A5A5A5A)
    assert booted.machine.exits["ptwr"] == 1
    stop = booted.machine.stop
    assert stop.kind is StopKind.CRASH and "not the domain's" in stop.reason
    assert pte(booted, booted.guest["alias"]) == booted.guest["target"] | 0x63


# Xen's l3_disallow_mask for a 32-bit PV guest (xen/arch/x86/mm.c): 0xFFFFF198 of the
# flags, bits 52-63 of the entry being flags 12-23.
L3_ALLOWED = {"rw": 0x2, "us": 0x4, "accessed": 0x20, "dirty": 0x40, "avail": 0xE00}
L3_REFUSED = {"pwt": 0x8, "pcd": 0x10, "pse": 0x80, "global": 0x100, "bit52": 1 << 52,
              "nx": 1 << 63}


@pytest.mark.parametrize("flags", list(L3_ALLOWED.values()) + [0xE67],
                         ids=[*L3_ALLOWED, "all"])
def test_an_l3_entry_may_carry_the_flags_xens_mask_allows(idle_pae, flags):
    booted = idle_pae
    l3 = booted.cpu.read(CR3)
    entry = q(booted, l3)
    assert mmu_update(booted, l3, entry | flags) == 0
    assert q(booted, l3) == entry | flags
    assert type_of(booted, entry & ~0xFFF) == (2, 1, True)  # still the one L2 reference


@pytest.mark.parametrize("flags", L3_REFUSED.values(), ids=L3_REFUSED)
def test_an_l3_entry_with_a_flag_xens_mask_refuses_is_einval(idle_pae, flags):
    booted = idle_pae
    l3 = booted.cpu.read(CR3)
    entry = q(booted, l3)
    assert mmu_update(booted, l3, entry | flags) == neg(EINVAL)
    assert q(booted, l3) == entry
