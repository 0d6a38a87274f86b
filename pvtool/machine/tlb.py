"""QEMU's softmmu TLB of a Unicorn CPU, flushed one page in place.

Why: Unicorn has no single-page flush, and a CR3 write through uc_reg_write empties
every mmu index's table and the jump cache, so a guest's invlpg cost a whole flush and
the refill of every page it then touched. Here one page is dropped the way QEMU's
tlb_flush_page does it (accel/tcg/cputlb.c), in the CPU's own memory: in each of x86's
three mmu indexes (kernel with SMAP, user, kernel without SMAP) the page's entry of the
direct-mapped table and of the eight-entry victim table; and the two pages of the jump
cache that could hold a block starting on the page or running into it (a block found
there by virtual PC is not checked against its physical page, so a remapped code page
would run stale code). A page inside the range of a large page the index has cached
needs that index's whole flush, which the caller does (Cpu.flush_tlb).

Where: X86CPU is { CPUState; CPUNegativeOffsetState neg; CPUX86State env }, neg being
{ CPUTLB tlb; IcountDecr }, CPUTLB { CPUTLBCommon c; CPUTLBDesc d[3]; CPUTLBDescFast
f[3] }, and CPUState holds tb_jmp_cache[4096]; so every offset below is fixed from
CPUX86State, which machine/cpu_state.py finds. Unicorn 2.1.4's CPUTLBEntry is 64 bytes
(QEMU's addr_read, addr_write, addr_code, then Unicorn's paddr, then addend), its
CPUTLBDesc 0x2b8. check_layout proves each offset against Unicorn's own behaviour on
a scratch CPU, once per process, and refuses to run on another layout.
"""

import ctypes
from functools import cache

from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, UC_PROT_ALL, Uc

from pvtool.machine.context import EmulatorLayoutError
from pvtool.machine.cpu_state import find_cpu_state

# Offsets from CPUX86State, unicorn 2.1.4's x86-64 build (measured; check_layout).
JUMP_CACHE = -0x8918  # CPUState.tb_jmp_cache: 4096 TranslationBlock pointers
TLB_DESCS = -0x870  # CPUTLBDesc d[MMU_MODES]
TLB_FAST = -0x40  # CPUTLBDescFast f[MMU_MODES]: { mask, table } each
DESC_SIZE = 0x2B8
MMU_MODES = 3
# CPUTLBDesc's fields, in 8-byte words.
LARGE_PAGE_ADDR, LARGE_PAGE_MASK, USED_ENTRIES, VICTIM_INDEX, VICTIMS = 0, 1, 4, 5, 6
VICTIM_COUNT = 8
ENTRY_BITS = 6  # a CPUTLBEntry is 64 bytes: 8 words, the first three the addresses
ENTRY_WORDS = 8
ADDEND = 4  # the entry's word whose sum with the virtual address is the host's
PAGE_BITS = 12
ALL_ONES = (1 << 64) - 1
PAGE_MASK = ALL_ONES ^ 0xFFF
HIT_MASK = PAGE_MASK | 0x800  # the page and TLB_INVALID: what tlb_hit_page compares
# tb-hash.h: the jump cache is hashed so that one page's blocks share 64 slots.
JUMP_CACHE_SIZE = 4096
JUMP_PAGE_BITS = 6
JUMP_PAGE_SIZE = 1 << JUMP_PAGE_BITS
JUMP_PAGE_MASK = JUMP_CACHE_SIZE - JUMP_PAGE_SIZE
SPAN = -JUMP_CACHE  # from the jump cache up to CPUX86State: all this module touches

_EMPTY_ENTRY = memoryview(bytearray(b"\xff" * 8 * ENTRY_WORDS)).cast("Q")
_NO_BLOCKS = memoryview(bytearray(8 * JUMP_PAGE_SIZE)).cast("Q")
_TABLE_VIEWS_KEPT = 16


def jump_page_slot(address: int) -> int:
    """The first jump-cache slot of the page holding ADDRESS (tb_jmp_cache_hash_page)."""
    mixed = address ^ (address >> (PAGE_BITS - JUMP_PAGE_BITS))
    return (mixed >> (PAGE_BITS - JUMP_PAGE_BITS)) & JUMP_PAGE_MASK


def jump_slot(pc: int) -> int:
    """The jump-cache slot of a block starting at PC (tb_jmp_cache_hash_func)."""
    mixed = pc ^ (pc >> (PAGE_BITS - JUMP_PAGE_BITS))
    return jump_page_slot(pc) | (mixed & (JUMP_PAGE_SIZE - 1))


def _words(address: int, size: int) -> memoryview:
    """The SIZE bytes at ADDRESS of this process as 64-bit words, in place."""
    return memoryview((ctypes.c_char * size).from_address(address)).cast("B").cast("Q")


def _hit(words, at: int, page: int) -> bool:
    """Whether the entry at word AT maps PAGE, for any access (tlb_hit_page_anyprot)."""
    return (words[at] & HIT_MASK == page or words[at + 1] & HIT_MASK == page
            or words[at + 2] & HIT_MASK == page)


class SoftTlb:
    """The TLB and jump cache of the CPU whose CPUX86State is at STATE."""

    def __init__(self, state: int):
        self._base = state + JUMP_CACHE
        self._words = _words(self._base, SPAN)
        self._tables: dict[tuple[int, int], memoryview] = {}

    def _word(self, offset: int) -> int:
        """The index in self._words of the word at OFFSET from CPUX86State."""
        return (offset - JUMP_CACHE) // 8

    def desc(self, mode: int) -> int:
        """The word index of mmu index MODE's CPUTLBDesc."""
        return self._word(TLB_DESCS + DESC_SIZE * mode)

    def fast(self, mode: int) -> tuple[int, int]:
        """Mmu index MODE's table: its mask and address."""
        at = self._word(TLB_FAST + 16 * mode)
        return self._words[at], self._words[at + 1]

    def table(self, mode: int) -> memoryview:
        """Mmu index MODE's direct-mapped table, as words, in place. QEMU reallocates
        it when it resizes it at a whole flush, so its address is read each time."""
        mask, address = self.fast(mode)
        view = self._tables.get((address, mask))
        if view is None:
            if len(self._tables) >= _TABLE_VIEWS_KEPT:
                self._tables.clear()
            view = self._tables[address, mask] = _words(address, mask + (1 << ENTRY_BITS))
        return view

    def entry(self, mode: int, address: int) -> int:
        """The word index in table(MODE) of the entry ADDRESS's page would use."""
        mask = self.fast(mode)[0]
        return ((address >> PAGE_BITS) & (mask >> ENTRY_BITS)) * ENTRY_WORDS

    def flush_page(self, address: int) -> bool:
        """Drop every cached translation and jump-cache block of the page holding
        linear ADDRESS. False, having done nothing, when an mmu index caches a large
        page whose range holds it: then only a whole flush will do."""
        page = address & PAGE_MASK
        words = self._words
        descs = [self.desc(mode) for mode in range(MMU_MODES)]
        if any(page & words[at + LARGE_PAGE_MASK] == words[at + LARGE_PAGE_ADDR]
               for at in descs):
            return False
        for mode, desc in enumerate(descs):
            table = self.table(mode)
            at = self.entry(mode, page)
            if _hit(table, at, page):
                table[at:at + ENTRY_WORDS] = _EMPTY_ENTRY
                self._count_dropped(desc)
            self._flush_victims(desc, page)
        for slot in (jump_page_slot(page - (1 << PAGE_BITS)), jump_page_slot(page)):
            words[slot:slot + JUMP_PAGE_SIZE] = _NO_BLOCKS
        return True

    def _flush_victims(self, desc: int, page: int) -> None:
        """Drop PAGE's entries of the victim table of the CPUTLBDesc at word DESC. A
        byte search for the page's upper six bytes skips the usual case of none."""
        words = self._words
        first = desc + VICTIMS
        last = first + VICTIM_COUNT * ENTRY_WORDS
        if page.to_bytes(8, "little")[2:] not in words[first:last].tobytes():
            return
        for at in range(first, last, ENTRY_WORDS):
            if _hit(words, at, page):
                words[at:at + ENTRY_WORDS] = _EMPTY_ENTRY
                self._count_dropped(desc)

    def _count_dropped(self, desc: int) -> None:
        """One entry fewer in use, as QEMU counts it (a victim's drop counts too,
        though its eviction already did: QEMU's size_t then wraps, and so does this)."""
        at = desc + USED_ENTRIES
        self._words[at] = (self._words[at] - 1) & ALL_ONES


# check_layout's scratch machine: flat 32-bit protected mode at CPL 0 (mmu index 2,
# kernel without SMAP), RAM at 0 from a buffer of ours, so an entry's addend is known.
_PROBE_RAM = 0x200000
_PROBE_CODE = 0x1000
_PROBE_BLOCK = 0x3000  # the second block, where the hook stops
_PROBE_DATA = 0x5000
_PROBE_RIVAL = 0x105000  # the same table slot as _PROBE_DATA: evicts it to a victim
_PROBE_MODE = 2
_PROBE_TEXT = (b"\xa1" + _PROBE_DATA.to_bytes(4, "little")  # mov eax, [data]
               + b"\xa1" + _PROBE_RIVAL.to_bytes(4, "little")  # mov eax, [rival]
               + b"\xe9" + (_PROBE_BLOCK - _PROBE_CODE - 15).to_bytes(4, "little"))
_PROBE_STOP = b"\xcd\x80\xf4"  # int 0x80 (the hook looks here); hlt


@cache
def check_layout() -> None:
    """Prove the offsets above against Unicorn's own behaviour, once per process: a
    scratch CPU reads a page, then one that evicts it to the victim table, and jumps
    to a second block; inside the hook at its end the table, victim table, counts and
    jump cache must hold exactly that, and flush_page must empty the page's entries
    and nothing else. Raise EmulatorLayoutError if not."""
    if not all(_probe()):
        raise EmulatorLayoutError("Unicorn's TLB is not where pvtool expects it "
                                  "(install unicorn==2.1.4)")


def _probe() -> list[bool]:
    """The checks check_layout makes, each True or False (any read of a wrong
    address stays inside the X86CPU, whose size covers SPAN, or fails the check)."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    ram = ctypes.create_string_buffer(_PROBE_RAM)
    uc.mem_map_ptr(0, _PROBE_RAM, UC_PROT_ALL, ctypes.addressof(ram))
    ctypes.memmove(ctypes.addressof(ram) + _PROBE_CODE, _PROBE_TEXT, len(_PROBE_TEXT))
    ctypes.memmove(ctypes.addressof(ram) + _PROBE_BLOCK, _PROBE_STOP, len(_PROBE_STOP))
    tlb = SoftTlb(find_cpu_state(uc))
    checks: list[bool] = []

    def stop(uc: Uc, intno: int, _data) -> None:
        checks.extend(_inspect(tlb, ctypes.addressof(ram)))
        uc.emu_stop()

    uc.hook_add(UC_HOOK_INTR, stop)
    uc.emu_start(_PROBE_CODE, _PROBE_RAM)
    return checks or [False]


def _inspect(tlb: SoftTlb, host: int) -> list[bool]:
    """check_layout's checks, inside the scratch CPU's hook."""
    masks = [tlb.fast(mode)[0] for mode in range(MMU_MODES)]
    if not all(mask and ((mask >> ENTRY_BITS) + 1) & (mask >> ENTRY_BITS) == 0
               and mask % (1 << ENTRY_BITS) == 0 and mask < 1 << 24 for mask in masks):
        return [False]
    table, desc, words = tlb.table(_PROBE_MODE), tlb.desc(_PROBE_MODE), tlb._words
    rival, victim = tlb.entry(_PROBE_MODE, _PROBE_RIVAL), desc + VICTIMS
    used = sum(1 for at in range(0, len(table), ENTRY_WORDS) if table[at] != ALL_ONES)
    blocks = [slot for slot in range(JUMP_CACHE_SIZE) if words[slot]]
    checks = [
        table[rival] == _PROBE_RIVAL and table[rival + ADDEND] == host,
        words[victim] == _PROBE_DATA and words[victim + ADDEND] == host,
        words[desc + VICTIM_INDEX] == 1,
        words[desc + LARGE_PAGE_ADDR] == ALL_ONES == words[desc + LARGE_PAGE_MASK],
        words[desc + USED_ENTRIES] == used,
        blocks == sorted([jump_slot(_PROBE_CODE), jump_slot(_PROBE_BLOCK)]),
        tlb.flush_page(_PROBE_DATA),
    ]
    return [*checks,
            words[victim] == ALL_ONES and table[rival] == _PROBE_RIVAL,
            words[desc + USED_ENTRIES] == used - 1,
            all(words[slot] for slot in blocks),  # another page's blocks stay
            tlb.flush_page(_PROBE_BLOCK),
            words[jump_slot(_PROBE_BLOCK)] == 0 and words[jump_slot(_PROBE_CODE)] != 0]
