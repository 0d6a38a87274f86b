"""set_gdt and update_descriptor: the guest's descriptors checked as Xen's
check_descriptor does and installed in the real GDT (pvtool.hv.layout.GDT, read-only
to the guest) beside Xen's reserved entries (XEN-ABI.md, "Selectors and
descriptors")."""

import struct

import pytest

from pvtool.hv import layout
from pvtool.machine.cpu import CS
from tests.hv.harness import P, hypercall
from tests.hv.xenguest import DOMID_SELF, EINVAL, FLAT_RING1_CS, HC, neg

PAGE = 4096
A = 0x20  # accessed, in a PTE
PIN_L1_TABLE, UNPIN_TABLE = 0, 4
ACCESSED = 1 << 40
DPL_MASK = 3 << 45

# Flat 4 GiB descriptors (Intel SDM Vol. 3A, 3.4.5), as a ring-0 kernel writes them.
CODE_DPL0 = 0x00CF9A000000FFFF
DATA_DPL0 = 0x00CF92000000FFFF
CODE_DPL3 = 0x00CFFA000000FFFF
DATA_DPL3 = 0x00CFF2000000FFFF
TSS = 0x0000890010000067  # 32-bit available TSS at 0x1000, limit 0x67
LDT = 0x0000820020000FFF
CALL_GATE_DPL3 = 0x0000EC0000080000 | 0x1234  # 32-bit call gate to 0x0008:0x1234
GUEST_GDT = (0, CODE_DPL0, DATA_DPL0, CODE_DPL3, DATA_DPL3)

SCRATCH = r"""
gdt_frame: .skip 4096
gdt_frame2: .skip 4096
frame_list: .skip 4096
"""


def with_dpl(desc: int, dpl: int) -> int:
    return desc & ~DPL_MASK | dpl << 45


def real_gdt(booted, first: int, count: int) -> tuple[int, ...]:
    return struct.unpack(f"<{count}Q", booted.memory.read_phys(layout.GDT + 8 * first,
                                                               8 * count))


def set_gdt(booted, descriptors, *, entries=None, frames=None):
    booted.write("gdt_frame", struct.pack(f"<{len(descriptors)}Q", *descriptors))
    frames = [booted.guest["gdt_frame"] // PAGE] if frames is None else frames
    booted.write_u32s("frame_list", *frames)
    count = len(descriptors) if entries is None else entries
    return hypercall(booted, HC.set_gdt, booted.guest["frame_list"], count)


def test_set_gdt_raises_dpl_0_descriptors_to_the_kernels_ring(idle):
    assert set_gdt(idle, GUEST_GDT) == 0
    installed = real_gdt(idle, 0, 5)
    assert installed[0] == 0
    assert installed[1] & ~ACCESSED == with_dpl(CODE_DPL0, 1)
    assert installed[2] & ~ACCESSED == with_dpl(DATA_DPL0, 1)
    assert installed[3] & ~ACCESSED == CODE_DPL3
    assert installed[4] & ~ACCESSED == DATA_DPL3


def test_set_gdt_keeps_xens_reserved_entries(idle):
    reserved = real_gdt(idle, 0xE000 // 8, 8)
    assert set_gdt(idle, GUEST_GDT) == 0
    assert real_gdt(idle, 0xE000 // 8, 8) == reserved
    assert reserved[FLAT_RING1_CS >> 3 & 7] != 0


def test_set_gdt_with_fewer_entries_clears_the_old_ones(idle):
    assert set_gdt(idle, GUEST_GDT) == 0
    assert set_gdt(idle, GUEST_GDT[:2]) == 0
    assert real_gdt(idle, 2, 3) == (0, 0, 0)
    assert real_gdt(idle, 1, 1)[0] & ~ACCESSED == with_dpl(CODE_DPL0, 1)


@pytest.mark.parametrize("bad", [TSS, LDT], ids=["tss", "ldt"])
def test_set_gdt_refuses_a_system_descriptor_and_changes_nothing(idle, bad):
    assert set_gdt(idle, GUEST_GDT) == 0
    before = real_gdt(idle, 0, 8)
    assert set_gdt(idle, (*GUEST_GDT, bad)) == neg(EINVAL)
    assert real_gdt(idle, 0, 8) == before


def test_set_gdt_keeps_a_call_gate(idle):
    assert set_gdt(idle, (0, CALL_GATE_DPL3)) == 0
    gate = real_gdt(idle, 1, 1)[0]
    assert (gate >> 40) & 0x1F == 0x0C  # a 32-bit call gate, S = 0
    assert (gate >> 45) & 3 == 3
    assert gate & 0xFFFF == 0x1234


@pytest.mark.parametrize("entries", [7169, 8192, 65536, 0xFFFFFFFF])
def test_set_gdt_refuses_more_entries_than_fit_below_xens(idle, entries):
    before = real_gdt(idle, 0, 8)
    frames = [idle.guest["gdt_frame"] // PAGE] * 16
    assert set_gdt(idle, GUEST_GDT, entries=entries, frames=frames) == neg(EINVAL)
    assert real_gdt(idle, 0, 8) == before


def test_set_gdt_takes_the_largest_table_that_fits(idle):
    """7168 entries (14 frames) end right below Xen's reserved entries."""
    idle.write("gdt_frame2", struct.pack("<Q", CODE_DPL0) * 512)
    frames = [idle.guest["gdt_frame2"] // PAGE] * 14
    idle.write_u32s("frame_list", *frames)
    assert hypercall(idle, HC.set_gdt, idle.guest["frame_list"], 7168) == 0
    assert real_gdt(idle, 7167, 1)[0] & ~ACCESSED == with_dpl(CODE_DPL0, 1)
    assert real_gdt(idle, FLAT_RING1_CS >> 3, 1)[0] != with_dpl(CODE_DPL0, 1)


@pytest.mark.parametrize("mfn", ["beyond-ram", "gdt-itself"])
def test_set_gdt_refuses_a_frame_the_domain_does_not_own(idle, mfn):
    before = real_gdt(idle, 0, 8)
    frame = {"beyond-ram": idle.machine.ram_size // PAGE,
             "gdt-itself": layout.GDT // PAGE}[mfn]
    assert set_gdt(idle, GUEST_GDT, frames=[frame]) == neg(EINVAL)
    assert real_gdt(idle, 0, 8) == before


def test_update_descriptor_checks_and_installs_one_entry(idle):
    assert set_gdt(idle, GUEST_GDT) == 0
    address = idle.guest["gdt_frame"] + 8 * 3
    assert hypercall(idle, HC.update_descriptor, address, 0,
                     DATA_DPL0 & 0xFFFFFFFF, DATA_DPL0 >> 32) == 0
    assert real_gdt(idle, 3, 1)[0] & ~ACCESSED == with_dpl(DATA_DPL0, 1)


@pytest.mark.parametrize("case", ["tss", "misaligned", "beyond-ram", "high-half"])
def test_update_descriptor_refusals_change_nothing(idle, case):
    assert set_gdt(idle, GUEST_GDT) == 0
    before = real_gdt(idle, 0, 8)
    address = idle.guest["gdt_frame"] + 8 * 3
    desc, ma_hi = DATA_DPL0, 0
    if case == "tss":
        desc = TSS
    elif case == "misaligned":
        address += 4
    elif case == "beyond-ram":
        address = idle.machine.ram_size + 8
    else:
        ma_hi = 1
    assert hypercall(idle, HC.update_descriptor, address, ma_hi, desc & 0xFFFFFFFF,
                     desc >> 32) == neg(EINVAL)
    assert real_gdt(idle, 0, 8) == before


def test_a_guest_uses_its_own_descriptors_in_ring_1(run_guest):
    """After set_gdt, the kernel loads its own DPL-0 data selector (0x10, RPL 0, which
    it must use with RPL 1: 0x11), far-jumps to its own code selector, takes a trap
    whose handler names its own code selector with RPL 0, and comes back to Xen's
    flat selector."""
    booted = run_guest(r"""
    mov edi, offset gdt_frame
    mov dword ptr [edi + 8], 0x0000ffff
    mov dword ptr [edi + 12], 0x00cf9a00
    mov dword ptr [edi + 16], 0x0000ffff
    mov dword ptr [edi + 20], 0x00cf9200
    mov eax, edi
    shr eax, 12
    mov [frame_list], eax
    mov ebx, offset frame_list
    mov ecx, 3
    HYPERCALL set_gdt
    mov [rc], eax
    mov ax, 0x11
    mov ds, ax
    mov es, ax
    mov [ds_seen], ds
    ljmp 0x09:own_code
own_code:
    mov [cs_seen], cs
    mov ebx, offset trap_table
    HYPERCALL set_trap_table
    int 0x80
    ljmp 0xe019:flat_again
flat_again:
    mov ax, 0xe021
    mov ds, ax
    mov es, ax
""", handlers=r"""
handler:
    mov [handler_cs], cs
    mov eax, [esp + 4]
    mov [frame_cs], eax
    HYPERVISOR_IRET
""", data=r"""
trap_table:
    .byte 0x80, 1
    .word 0x0008
    .long handler
    .long 0, 0
rc: .long 0xffffffff
ds_seen: .long 0
cs_seen: .long 0
handler_cs: .long 0
frame_cs: .long 0
""", bss=SCRATCH)
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.u32("rc") == 0
    assert booted.u32("ds_seen") == 0x11
    assert booted.u32("cs_seen") == 0x09
    assert booted.u32("handler_cs") == 0x09  # the trap table's 0x08 got RPL 1
    assert booted.u32("frame_cs") == 0x09 | 1 << 16  # interrupted CS, events masked
    assert booted.cpu.read(CS) == FLAT_RING1_CS


def test_update_descriptor_cannot_write_into_a_page_table(idle):
    """update_descriptor stores the descriptor in the guest's frame too; were a page
    table in use accepted as that frame, a non-present "descriptor" whose low half is
    a PTE would map the hypervisor's GDT writable (Xen requires a descriptor or
    writable page, which a page table never is)."""
    frames = idle.guest["gdt_frame"]
    pde = idle.pde(frames)
    l1 = pde & ~0xFFF
    slot = (frames >> 12) & 0x3FF
    entry = l1 + 4 * (slot & ~1)  # 8-byte aligned: two PTEs
    before = idle.memory.read_phys(entry, 8)
    forged_pte = layout.GDT | 0x63  # P RW A D, non-present as a descriptor (bit 47 clear)
    assert hypercall(idle, HC.update_descriptor, entry, 0, forged_pte, 0) == neg(EINVAL)
    assert idle.memory.read_phys(entry, 8) == before


def mmuext(booted, cmd, arg):
    booted.write("frame_list", struct.pack("<3I", cmd, arg, 0))
    return hypercall(booted, HC.mmuext_op, booted.guest["frame_list"], 1, 0, DOMID_SELF)


def test_update_descriptor_writes_a_former_page_table_once_nothing_holds_it(idle):
    """A pinned L1 takes no descriptor; unpinned, it is a page table no base or pin
    holds, which the write devalidates (it is ordinary memory again) before landing."""
    table = idle.guest["gdt_frame2"]
    assert hypercall(idle, HC.update_va_mapping, table, table | P | A, 0, 2) == 0
    assert mmuext(idle, PIN_L1_TABLE, table // PAGE) == 0
    address = table + 8 * 5
    args = (address, 0, DATA_DPL0 & 0xFFFFFFFF, DATA_DPL0 >> 32)
    assert hypercall(idle, HC.update_descriptor, *args) == neg(EINVAL)
    assert mmuext(idle, UNPIN_TABLE, table // PAGE) == 0
    assert table // PAGE in idle.domain.pagetables.typed
    assert hypercall(idle, HC.update_descriptor, *args) == 0
    assert idle.memory.read_phys(address, 8) == struct.pack("<Q", DATA_DPL0)
    assert table // PAGE not in idle.domain.pagetables.typed
