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

import functools

from capstone.x86_const import X86_OP_IMM, X86_OP_MEM

from pvtool.hv.domain import Domain
from pvtool.hv.errors import DomainCrash, HypercallError
from pvtool.machine.cpu import EIP, GPRS64_BY_NAME, GPRS_BY_NAME, RIP
from pvtool.machine.memory import PageFault
from pvtool.x86 import paging
from pvtool.x86.isa import MAX_INSN_SIZE, decode_one
from pvtool.x86.paging import PAGE_SHIFT

PF_PRESENT, PF_WRITE, PF_USER = paging.PF_P, paging.PF_W, paging.PF_U
IP_REGISTER = {32: EIP, 64: RIP}
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
    frame pvtool write-protected) and has been dealt with; False to bounce it."""
    if error_code & (PF_PRESENT | PF_WRITE | PF_USER) != PF_PRESENT | PF_WRITE:
        return False
    memory, tables = dom.memory, dom.pagetables
    try:
        paddr = memory.virt_to_phys(address)  # kept: the store's page is read often
    except PageFault:
        return False
    frame = paddr >> PAGE_SHIFT
    if tables.in_use(frame):
        if not tables.store_emulated(frame):
            return False
        _emulate_store(dom, paddr)
        return True
    try:
        where = memory.walk(address)
    except PageFault:
        return False
    return tables.give_back_write_access(where.pte_addr)


def _emulate_store(dom: Domain, paddr: int) -> None:
    vcpu = dom.vcpu
    bits = vcpu.bits
    eip = vcpu.get(IP_REGISTER[bits])
    code = dom.memory.read_virt(eip, MAX_INSN_SIZE)
    size, immediate, register, length = _store_shape(code, eip, bits)
    value = immediate if register is None else vcpu.get(register) & ((1 << 8 * size) - 1)
    tables = dom.pagetables
    entry_addr = paddr & ~(tables.entry_size - 1)
    offset = paddr - entry_addr
    if offset + size > tables.entry_size:
        raise DomainCrash(f"{_text(code, eip, bits)} at {eip:#x} writes across two "
                          "page-table entries")
    mask = ((1 << (8 * size)) - 1) << (8 * offset)
    old = tables.read_entry(entry_addr)
    try:
        tables.write_entry(entry_addr, old & ~mask | (value << (8 * offset)) & mask, old)
    except HypercallError as refusal:
        raise DomainCrash(f"{_text(code, eip, bits)} at {eip:#x} writes an invalid "
                          f"page-table entry: {refusal.why}") from None
    vcpu.set(IP_REGISTER[bits], eip + length)


@functools.lru_cache(maxsize=256)
def _store_shape(code: bytes, eip: int, bits: int) -> tuple[int, int | None, int | None, int]:
    """(size, immediate or None, source register or None, length) of the store
    CODE at EIP holds: a `mov [mem], reg/imm`, the shape compilers give a PTE store.
    Cached: a kernel updates its page tables from a handful of instructions."""
    insn = decode_one(code, eip, bits)
    if insn is None or insn.mnemonic != "mov" or len(insn.operands) != 2:
        raise DomainCrash(f"cannot emulate a write into a page table: {_describe(insn)}")
    dst, src = insn.operands
    if dst.type != X86_OP_MEM or dst.size not in STORE_SIZES[bits]:
        raise DomainCrash(f"cannot emulate a write into a page table: {_describe(insn)}")
    if src.type == X86_OP_IMM:
        return dst.size, src.imm & (1 << 8 * dst.size) - 1, None, insn.size
    register = SOURCE_REGISTERS[bits].get(insn.reg_name(src.reg))
    if register is None:
        raise DomainCrash(f"cannot emulate a write into a page table: {_describe(insn)}")
    return dst.size, None, register, insn.size


def _text(code: bytes, eip: int, bits: int) -> str:
    return _describe(decode_one(code, eip, bits))


def _describe(insn) -> str:
    return "undecodable bytes" if insn is None else f"{insn.mnemonic} {insn.op_str}"
