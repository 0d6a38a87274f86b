"""Writable page tables (Xen's ptwr): an unmodified kernel writes its page-table
entries with plain stores. Page tables in use are mapped read-only, so such a store
faults; the hypervisor decodes it, merges it into the entry it lands in (4 or 8 bytes,
as the paging mode has them), validates the entry as mmu_update would, writes it and
moves the guest past the instruction.

A store through a mapping pvtool made read-only, into a frame that is no page table in
use (any more), gets the mapping's write access back and is retried.

A 64-bit kernel's stores are 8 bytes from 64-bit registers, and Xen emulates them into
L1 tables only (pv/ro-page-fault.c: ptwr_do_page_fault): a store into an upper-level
table is the guest's #PF (PagingRules.ptwr_levels). Its kernel runs at CPL 3, so the
caller passes the error code as Xen rewrites it for the guest's mode (U clear in
kernel mode).
"""

from typing import NamedTuple

from capstone.x86_const import X86_OP_IMM, X86_OP_MEM

from pvtool.hv.domain import Domain
from pvtool.hv.errors import DomainCrash, HypercallError
from pvtool.hv.frames import PageType, is_table, page_type
from pvtool.hv.pagetables import PageTables
from pvtool.machine.cpu import GPRS64_BY_NAME, GPRS_BY_NAME
from pvtool.machine.memory import GuestMemory, PageFault
from pvtool.x86 import paging
from pvtool.x86.isa import MAX_INSN_SIZE, decode_one
from pvtool.x86.paging import PAGE_SHIFT, PAGE_SIZE

PF_PRESENT, PF_WRITE, PF_USER = paging.PF_P, paging.PF_W, paging.PF_U
L1 = int(PageType.L1)  # read on every store: an enum member's lookup costs 0.1 us
STORE_SIZES = {32: (1, 2, 4), 64: (1, 2, 4, 8)}
# The registers a store may come from, by the names capstone gives them and their
# parts (the low byte, word and, on 64-bit, dword), never AH-DH.
_LEGACY = ("ax", "bx", "cx", "dx", "si", "di", "bp")
_LOW_BYTES = {"ax": "al", "bx": "bl", "cx": "cl", "dx": "dl", "si": "sil", "di": "dil",
              "bp": "bpl"}
SOURCE_REGISTERS = {
    32: {**{f"e{r}": GPRS_BY_NAME[f"e{r}"] for r in (*_LEGACY, "sp")},
         **{r: GPRS_BY_NAME[f"e{r}"] for r in _LEGACY},
         **{_LOW_BYTES[r]: GPRS_BY_NAME[f"e{r}"] for r in ("ax", "bx", "cx", "dx")}},
    64: {**{f"{p}{r}": GPRS64_BY_NAME[f"r{r}"] for r in _LEGACY for p in ("r", "e", "")},
         "rsp": GPRS64_BY_NAME["rsp"], "esp": GPRS64_BY_NAME["rsp"],
         **{_LOW_BYTES[r]: GPRS64_BY_NAME[f"r{r}"] for r in _LEGACY},
         **{f"r{n}{s}": GPRS64_BY_NAME[f"r{n}"] for n in range(8, 16)
            for s in ("", "d", "w", "b")}},
}


def handle_write_fault(dom: Domain, address: int, error_code: int) -> bool:
    """True when the #PF at ADDRESS was a kernel store into a page table (or into a
    frame pvtool write-protected) and has been dealt with; False to bounce it. The
    path of every PTE store: the frame's type is read once."""
    if error_code & (PF_PRESENT | PF_WRITE | PF_USER) != PF_PRESENT | PF_WRITE:
        return False
    memory, tables = dom.memory, dom.pagetables
    try:
        paddr = memory.virt_to_phys(address)  # kept: the store's page is read often
    except PageFault:
        return False
    frame = paddr >> PAGE_SHIFT
    info = dom.frames.type_info(frame)
    if is_table(info) and tables.validator.is_live(frame):  # PageTables.in_use
        level = page_type(info)
        levels = tables.rules.ptwr_levels
        if levels is not None and level not in levels:
            return False
        _emulate_store(dom, paddr, level)
        return True
    try:
        where = memory.walk(address)
    except PageFault:
        return False
    return tables.give_back_write_access(where.pte_addr)


def _emulate_store(dom: Domain, paddr: int, level: int) -> None:
    """The store at EIP into the entry at PADDR, of a table of LEVEL in use; EIP
    moved past it in place (Cpu.resume_after_fault: this runs in a fault's hook)."""
    cpu = dom.machine.cpu
    eip, bits = cpu.ip, cpu.bits
    store = _store_at(dom.memory, eip, bits)
    size = store.size
    value = store.immediate if store.register is None \
        else cpu.read(store.register) & ((1 << 8 * size) - 1)
    tables = dom.pagetables
    offset = paddr & (tables.entry_size - 1)
    if offset + size > tables.entry_size:
        raise DomainCrash(f"{_text(store.code, eip, bits)} at {eip:#x} writes across two "
                          "page-table entries")
    entry_addr = paddr - offset
    mask = ((1 << (8 * size)) - 1) << (8 * offset)
    try:
        if level == L1:
            _store_into_l1(tables, entry_addr, mask, value << (8 * offset))
        else:
            old = tables.read_entry(entry_addr)
            tables.write_entry(entry_addr, old & ~mask | (value << (8 * offset)) & mask, old)
    except HypercallError as refusal:
        raise DomainCrash(f"{_text(store.code, eip, bits)} at {eip:#x} writes an invalid "
                          f"page-table entry: {refusal.why}") from None
    cpu.resume_after_fault(eip + len(store.code))


def _store_into_l1(tables: PageTables, entry_addr: int, mask: int, value: int) -> None:
    """The hot path: VALUE's bits under MASK stored into the L1 entry at ENTRY_ADDR,
    read once, validated as mmu_update's, written, with no TLB flush (the kernel's
    invlpg follows, as on the bare machine: PageTables.write_entry)."""
    validator = tables.validator
    old = validator.read_entry(entry_addr)
    validator.store_l1e(entry_addr, old & ~mask | value & mask, old,
                        downgrade=tables.rules.downgrade)


class Store(NamedTuple):
    """A decoded `mov [mem], reg/imm`, the shape compilers give a PTE store."""

    code: bytes  # the instruction's bytes, compared with memory before each reuse
    size: int  # bytes stored
    immediate: int | None
    register: int | None  # the source register, when not an immediate


# (bits, EIP) -> the store decoded there: a kernel updates its page tables from a
# handful of instructions. Kept for any domain: a reuse checks the bytes first.
_stores: dict[tuple[int, int], Store] = {}
MAX_STORES = 256


def _store_at(memory: GuestMemory, eip: int, bits: int) -> Store:
    """The store at EIP, decoded once per address. A kernel may rewrite its code, so
    the cached decode is used only while memory still holds its bytes: x86 decodes an
    instruction from its own bytes alone, so no other byte need be compared."""
    store = _stores.get((bits, eip))
    if store is not None and memory.read_virt(eip, len(store.code)) == store.code:
        return store
    store = _decode_store(_code_at(memory, eip), eip, bits)
    if len(_stores) >= MAX_STORES:
        _stores.clear()
    _stores[bits, eip] = store
    return store


def _code_at(memory: GuestMemory, eip: int) -> bytes:
    """The longest instruction's worth of bytes at EIP, or up to the end of its page
    where the next page is not mapped (a store in a page's last bytes)."""
    try:
        return memory.read_virt(eip, MAX_INSN_SIZE)
    except PageFault:
        return memory.read_virt(eip, PAGE_SIZE - (eip & (PAGE_SIZE - 1)))


def _decode_store(code: bytes, eip: int, bits: int) -> Store:
    """The store CODE at EIP holds, or DomainCrash for any other instruction."""
    insn = decode_one(code, eip, bits)
    if insn is None or insn.mnemonic != "mov" or len(insn.operands) != 2:
        raise DomainCrash(f"cannot emulate a write into a page table: {_describe(insn)}")
    dst, src = insn.operands
    if dst.type != X86_OP_MEM or dst.size not in STORE_SIZES[bits]:
        raise DomainCrash(f"cannot emulate a write into a page table: {_describe(insn)}")
    code = code[:insn.size]
    if src.type == X86_OP_IMM:
        return Store(code, dst.size, src.imm & (1 << 8 * dst.size) - 1, None)
    register = SOURCE_REGISTERS[bits].get(insn.reg_name(src.reg))
    if register is None:
        raise DomainCrash(f"cannot emulate a write into a page table: {_describe(insn)}")
    return Store(code, dst.size, None, register)


def _text(code: bytes, eip: int, bits: int) -> str:
    return _describe(decode_one(code, eip, bits))


def _describe(insn) -> str:
    return "undecodable bytes" if insn is None else f"{insn.mnemonic} {insn.op_str}"
