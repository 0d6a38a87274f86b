"""Page-table hypercalls: update_va_mapping, mmu_update and mmuext_op (validated
through hv/pagetables.py), for 32-bit and 64-bit guests: a 64-bit guest passes
update_va_mapping's PTE in one register (va, val, flags) and its mmuext_op entries are
24 bytes (xen.h with 8-byte xen_pfn_t), and it has a user L4 of its own
(MMUEXT_NEW_USER_BASEPTR, xen/arch/x86/mm.c); a 32-bit guest gets -ENOSYS for that."""

import struct
from collections.abc import Callable

from pvtool.abi.layouts import MMU_UPDATE, MMUEXT_OP, Layout
from pvtool.abi.xen import UVMF, UVMF_FLUSHTYPE_MASK, Errno, MmuextCmd, MmuUpdateCmd
from pvtool.abi.xen64 import MMUEXT_OP_64
from pvtool.hv.domain import PvDomain, VCpu
from pvtool.hv.errors import HypercallError
from pvtool.hv.hypercalls.common import MAX_BATCH
from pvtool.x86.paging import PAGE_SIZE

PIN_LEVELS = {MmuextCmd.pin_l1_table: 1, MmuextCmd.pin_l2_table: 2,
              MmuextCmd.pin_l3_table: 3, MmuextCmd.pin_l4_table: 4}
# One vCPU runs at a time on the one emulated CPU: a flush of all is a local flush.
TLB_FLUSHES = frozenset(map(int, (MmuextCmd.tlb_flush_local, MmuextCmd.tlb_flush_all)))
INVLPGS = frozenset(map(int, (MmuextCmd.invlpg_local, MmuextCmd.invlpg_all)))
NEW_BASEPTR = int(MmuextCmd.new_baseptr)
NEW_USER_BASEPTR = int(MmuextCmd.new_user_baseptr)
UNPIN_TABLE = int(MmuextCmd.unpin_table)
PAGE_MASK = PAGE_SIZE - 1


def _struct_of(layout: Layout, *names: str) -> struct.Struct:
    """The fields NAMES of LAYOUT (in offset order) as one struct: a batch entry is
    then one unpack, on the path of every NEW_BASEPTR."""
    fmt, at = "<", 0
    for name in names:
        field = layout.fields[name]
        fmt += f"{field.offset - at}x{field.fmt}"
        at = field.offset + field.size
    return struct.Struct(fmt)


MMU_UPDATE_FIELDS = _struct_of(MMU_UPDATE, "ptr", "val")
MMUEXT_OPS = {32: (MMUEXT_OP.size, _struct_of(MMUEXT_OP, "cmd", "arg1")),
              64: (MMUEXT_OP_64.size, _struct_of(MMUEXT_OP_64, "cmd", "arg1"))}


def update_va_mapping(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    if vcpu.bits == 64:
        vaddr, pte, flags = args[:3]
    else:
        vaddr, pte_lo, pte_hi, flags = args[:4]
        pte = pte_hi << 32 | pte_lo
    dom.pagetables.update_va_mapping(vaddr, pte)
    flush = flags & UVMF_FLUSHTYPE_MASK
    if flush == UVMF.invlpg:
        dom.pagetables.flush_tlb_page(vaddr)
    elif flush:
        dom.pagetables.flush_tlb()
    return 0


def mmu_update(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    """No flush of its own: PageTables.mmu_update flushes where a table above L1
    changed and leaves an L1 entry's old translation to the guest's invlpg, as Xen's
    do_mmu_update does (xen/arch/x86/mm.c: mod_l1_entry asks for no flush, the guest
    follows with MMUEXT_INVLPG or a TLB flush)."""
    reqs, count, done_ptr = args[0], args[1], args[2]
    _batch(dom, reqs, count, done_ptr, MMU_UPDATE.size, MMU_UPDATE_FIELDS, _one_mmu_update)
    return 0


def _one_mmu_update(dom: PvDomain, ptr: int, val: int) -> None:
    cmd, address = ptr & 3, ptr & ~3
    if cmd not in (MmuUpdateCmd.normal_pt_update, MmuUpdateCmd.pt_update_preserve_ad):
        raise HypercallError(Errno.ENOSYS, f"mmu_update command {cmd}")
    dom.pagetables.mmu_update(address, val)


def mmuext_op(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    ops, count, done_ptr = args[0], args[1], args[2]
    size, fields = MMUEXT_OPS[vcpu.bits]
    if count == 1 and not done_ptr:  # a kernel's mov cr3 or invlpg: _batch's, no loop
        _one_mmuext(dom, *fields.unpack_from(dom.copy_from_guest(ops, size)))
    elif count == 2 and not done_ptr and (ops & PAGE_MASK) + 2 * size <= PAGE_SIZE:
        # A 64-bit kernel's mov cr3 with its user base, read in one copy. Xen reads
        # each entry after the one before has run; here both are read first, which
        # differs only for a block a NEW_BASEPTR maps elsewhere (a kernel's, Linux's
        # per-CPU multicall buffer or pvtool's glue data, is mapped the same in every
        # base). In one page, the second entry is readable if the first is: a copy
        # that faults refuses where _batch's first read would.
        data = dom.copy_from_guest(ops, 2 * size)
        _one_mmuext(dom, *fields.unpack_from(data))
        _one_mmuext(dom, *fields.unpack_from(data, size))
    else:
        _batch(dom, ops, count, done_ptr, size, fields, _one_mmuext)
    return 0


def _batch(dom: PvDomain, base: int, count: int, done_ptr: int, size: int,
           fields: struct.Struct, one: Callable[..., None]) -> None:
    """Run ONE(dom, *FIELDS of each) on COUNT structures of SIZE bytes from BASE, each
    read just before it runs (an earlier one may remap the next), stopping at the first
    refusal; write how many were done to DONE_PTR (if given) either way, as Xen does."""
    if count > MAX_BATCH:
        raise HypercallError(Errno.EINVAL, f"batch of {count} entries")
    done = 0
    try:
        for address in range(base, base + count * size, size):
            one(dom, *fields.unpack_from(dom.copy_from_guest(address, size)))
            done += 1
    finally:
        if done_ptr:
            dom.copy_to_guest(done_ptr, struct.pack("<I", done))


def _one_mmuext(dom: PvDomain, cmd: int, arg1: int) -> None:
    pagetables = dom.pagetables
    # A kernel's hot paths first (a context switch, 64-bit with its user base; an
    # invlpg), compared as plain ints: an IntEnum member's comparison costs more.
    if cmd == NEW_BASEPTR:
        pagetables.new_baseptr(arg1)
    elif cmd in INVLPGS:
        pagetables.flush_tlb_page(arg1)
    elif cmd == NEW_USER_BASEPTR and pagetables.has_user_base:
        pagetables.new_user_baseptr(arg1)
    elif cmd in TLB_FLUSHES:
        pagetables.flush_tlb()
    elif cmd in PIN_LEVELS:
        pagetables.pin(arg1, PIN_LEVELS[cmd])
    elif cmd == UNPIN_TABLE:
        pagetables.unpin(arg1)
    else:
        raise HypercallError(Errno.ENOSYS, f"mmuext_op command {cmd}")
