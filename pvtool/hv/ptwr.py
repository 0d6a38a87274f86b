"""Writable page tables (Xen's ptwr): an unmodified kernel writes its page-table
entries with plain stores. Page tables in use are mapped read-only, so such a store
faults; the hypervisor decodes it, merges it into the entry it lands in (4 or 8 bytes,
as the paging mode has them), validates the entry as mmu_update would, writes it and
moves the guest past the instruction.

A store through a mapping pvtool made read-only, into a frame that is no page table in
use (any more), gets the mapping's write access back and is retried.
"""

from capstone.x86_const import X86_OP_IMM, X86_OP_MEM

from pvtool.hv.domain import Domain
from pvtool.hv.errors import DomainCrash, HypercallError
from pvtool.machine.cpu import EIP, GPRS_BY_NAME
from pvtool.machine.memory import PageFault
from pvtool.x86 import paging
from pvtool.x86.isa import MAX_INSN_SIZE, decode_one
from pvtool.x86.paging import PAGE_SHIFT

PF_PRESENT, PF_WRITE, PF_USER = paging.PF_P, paging.PF_W, paging.PF_U


def handle_write_fault(dom: Domain, address: int, error_code: int) -> bool:
    """True when the #PF at ADDRESS was a kernel store into a page table (or into a
    frame pvtool write-protected) and has been dealt with; False to bounce it."""
    if error_code & (PF_PRESENT | PF_WRITE | PF_USER) != PF_PRESENT | PF_WRITE:
        return False
    try:
        where = dom.memory.walk(address)
    except PageFault:
        return False
    tables = dom.pagetables
    if tables.in_use(where.paddr >> PAGE_SHIFT):
        _emulate_store(dom, where.paddr)
        return True
    return tables.give_back_write_access(where.pte_addr)


def _emulate_store(dom: Domain, paddr: int) -> None:
    vcpu = dom.vcpu
    eip = vcpu.eip
    insn = decode_one(dom.memory.read_virt(eip, MAX_INSN_SIZE), eip, dom.machine.cpu.bits)
    value, size = _store_operands(dom, insn)
    tables = dom.pagetables
    entry_addr = paddr & ~(tables.entry_size - 1)
    offset = paddr - entry_addr
    if offset + size > tables.entry_size:
        raise DomainCrash(f"{_text(insn)} at {eip:#x} writes across two page-table entries")
    mask = ((1 << (8 * size)) - 1) << (8 * offset)
    new = tables.read_entry(entry_addr) & ~mask | (value << (8 * offset)) & mask
    try:
        tables.write_entry(entry_addr, new)
    except HypercallError as refusal:
        raise DomainCrash(f"{insn.mnemonic} {insn.op_str} at {eip:#x} writes an invalid "
                          f"page-table entry: {refusal.why}") from None
    vcpu.set(EIP, eip + insn.size)


def _store_operands(dom: Domain, insn) -> tuple[int, int]:
    """(value, size) of a `mov [mem], reg/imm`, the shape compilers give a PTE store."""
    if insn is None or insn.mnemonic != "mov" or len(insn.operands) != 2:
        raise DomainCrash(f"cannot emulate a write into a page table: {_text(insn)}")
    dst, src = insn.operands
    if dst.type != X86_OP_MEM or dst.size not in (1, 2, 4):
        raise DomainCrash(f"cannot emulate a write into a page table: {_text(insn)}")
    if src.type == X86_OP_IMM:
        return src.imm & 0xFFFFFFFF, dst.size
    name = insn.reg_name(src.reg)
    full = {"ax": "eax", "bx": "ebx", "cx": "ecx", "dx": "edx", "al": "eax", "bl": "ebx",
            "cl": "ecx", "dl": "edx", "si": "esi", "di": "edi", "bp": "ebp"}.get(name, name)
    if full not in GPRS_BY_NAME or name in ("ah", "bh", "ch", "dh"):
        raise DomainCrash(f"cannot emulate a write into a page table: {_text(insn)}")
    return dom.vcpu.get(GPRS_BY_NAME[full]), dst.size


def _text(insn) -> str:
    return "undecodable bytes" if insn is None else f"{insn.mnemonic} {insn.op_str}"

