"""QEMU's softmmu TLB of a Unicorn CPU, flushed one page in place.

Why: Unicorn has no single-page flush, and a CR3 write through uc_reg_write empties
every mmu index's table and the jump cache, so a guest's invlpg cost a whole flush and
the refill of every page it then touched. Here one page is dropped the way QEMU's
tlb_flush_page does it (accel/tcg/cputlb.c), in the CPU's own memory: in each of x86's
three mmu indexes (kernel with SMAP, user, kernel without SMAP) the page's entry of the
direct-mapped table and any of the eight-entry victim table (here the whole victim
table: see SoftTlb); and the two pages of the jump cache that could hold a block
starting on the page or running into it (a block found there by virtual PC is not
checked against its physical page, so a remapped code page would run stale code). A
page inside the range of a large page the index has cached needs that index's whole
flush, which the caller does (Cpu.flush_tlb).

Not done in place: the whole flush. Emptying every table and the 32 KiB jump cache
from Python measured twice the cost of Unicorn's own (a CR3 write, which is
cpu_x86_update_cr3: the store and tlb_flush), and it could not resize the tables as
QEMU does then.

Where: X86CPU is { CPUState; CPUNegativeOffsetState neg; CPUX86State env }, neg being
{ CPUTLB tlb; IcountDecr }, CPUTLB { CPUTLBCommon c; CPUTLBDesc d[3]; CPUTLBDescFast
f[3] }, and CPUState holds tb_jmp_cache[4096]; so every offset below is fixed from
CPUX86State, which machine/cpu_state.py finds. Unicorn 2.1.4's CPUTLBEntry is 64 bytes
(QEMU's addr_read, addr_write, addr_code, then Unicorn's paddr, then addend), its
CPUTLBDesc 0x2b8. check_layout proves each offset against Unicorn's own behaviour on
a scratch CPU, once per process, and refuses to run on another layout.
"""

import ctypes
import os
from functools import cache

from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, UC_PROT_ALL, Uc

from pvtool.interrupts import emulate
from pvtool.machine.context import EmulatorLayoutError
from pvtool.machine.cpu_state import find_cpu_state

# Offsets from CPUX86State, unicorn 2.1.4's x86-64 build (measured; check_layout).
JUMP_CACHE = -0x8918  # CPUState.tb_jmp_cache: 4096 TranslationBlock pointers
TLB_COMMON = -0x890  # CPUTLBCommon: uint16_t dirty, a bit per mmu index, first
TLB_DESCS = -0x870  # CPUTLBDesc d[MMU_MODES]
TLB_FAST = -0x40  # CPUTLBDescFast f[MMU_MODES]: { mask, table } each
DESC_SIZE = 0x2B8
MMU_MODES = 3
DIRTY_MASK = (1 << MMU_MODES) - 1
# CPUTLBDesc's fields, in 8-byte words.
LARGE_PAGE_ADDR, LARGE_PAGE_MASK, USED_ENTRIES, VICTIM_INDEX, VICTIMS = 0, 1, 4, 5, 6
VICTIM_COUNT = 8
ENTRY_BITS = 6  # a CPUTLBEntry is 64 bytes: 8 words, the first three the addresses
ENTRY_WORDS = 8
ADDEND = 4  # the entry's word whose sum with the virtual address is the host's
PAGE_BITS = 12
# Words are read signed: an empty entry's all ones is then -1, one of Python's small
# ints, and a 64-bit kernel's addresses need no more digits than they have bits,
# which halves the cost of each read and comparison.
EMPTY = -1
SIGN = 1 << 63
PAGE_MASK = (1 << 64) - (1 << PAGE_BITS)
HIT_MASK = -0x800  # the page and TLB_INVALID: what tlb_hit_page compares
# tb-hash.h: the jump cache is hashed so that one page's blocks share 64 slots.
JUMP_CACHE_SIZE = 4096
JUMP_PAGE_BITS = 6
JUMP_PAGE_SIZE = 1 << JUMP_PAGE_BITS
JUMP_PAGE_MASK = JUMP_CACHE_SIZE - JUMP_PAGE_SIZE
SPAN = -JUMP_CACHE  # from the jump cache up to CPUX86State: all this module touches

_EMPTY_ENTRY = memoryview(bytearray(b"\xff" * 8 * ENTRY_WORDS)).cast("q")
_EMPTY_VICTIMS = memoryview(bytearray(b"\xff" * 8 * ENTRY_WORDS * VICTIM_COUNT)).cast("q")
_NO_BLOCKS = memoryview(bytearray(8 * JUMP_PAGE_SIZE)).cast("q")
_TABLE_VIEWS_KEPT = 16


def jump_page_slot(address: int) -> int:
    """The first jump-cache slot of the page holding ADDRESS (tb_jmp_cache_hash_page)."""
    mixed = address ^ (address >> (PAGE_BITS - JUMP_PAGE_BITS))
    return (mixed >> (PAGE_BITS - JUMP_PAGE_BITS)) & JUMP_PAGE_MASK


def jump_slot(pc: int) -> int:
    """The jump-cache slot of a block starting at PC (tb_jmp_cache_hash_func)."""
    mixed = pc ^ (pc >> (PAGE_BITS - JUMP_PAGE_BITS))
    return jump_page_slot(pc) | (mixed & (JUMP_PAGE_SIZE - 1))


def _word(offset: int) -> int:
    """The index among SoftTlb's words of the word at OFFSET from CPUX86State."""
    return (offset - JUMP_CACHE) // 8


def _words(address: int, size: int) -> memoryview:
    """The SIZE bytes at ADDRESS of this process as signed 64-bit words, in place."""
    return memoryview((ctypes.c_char * size).from_address(address)).cast("B").cast("q")


class SoftTlb:
    """The TLB and jump cache of the CPU whose CPUX86State is at STATE.

    flush_page runs on every invlpg a kernel makes, so it is written for speed: word
    indexes computed once, only the mmu indexes QEMU marks dirty (filled since their
    last whole flush; the others are empty), and a victim table emptied whole rather
    than searched (a search cost more than the refills it saves: victims hold the few
    entries evicted from the direct-mapped table), its round-robin index back to 0 as
    QEMU's whole flush leaves it, so that an index with no eviction since costs one
    read."""

    def __init__(self, state: int):
        self._words = _words(state + JUMP_CACHE, SPAN)
        self._tables: dict[int, memoryview] = {}
        self._dirty = _word(TLB_COMMON)
        # Per mmu index: its CPUTLBDesc's and CPUTLBDescFast's word indexes and its
        # victim table's words; then those of the indexes each dirty mask names.
        modes = tuple((self.desc(mode), _word(TLB_FAST + 16 * mode),
                       slice(self.desc(mode) + VICTIMS,
                             self.desc(mode) + VICTIMS + VICTIM_COUNT * ENTRY_WORDS))
                      for mode in range(MMU_MODES))
        self._modes = modes
        self._dirty_modes = tuple(tuple(m for bit, m in enumerate(modes) if dirty >> bit & 1)
                                  for dirty in range(1 << MMU_MODES))

    def desc(self, mode: int) -> int:
        """The word index of mmu index MODE's CPUTLBDesc."""
        return _word(TLB_DESCS + DESC_SIZE * mode)

    def dirty(self) -> int:
        """The mask of mmu indexes filled since their last whole flush."""
        return self._words[self._dirty] & DIRTY_MASK

    def fast(self, mode: int) -> tuple[int, int]:
        """Mmu index MODE's table: its mask and address."""
        at = self._modes[mode][1]
        return self._words[at], self._words[at + 1]

    def table(self, mode: int) -> memoryview:
        """Mmu index MODE's direct-mapped table, as words, in place."""
        return self._table(*self.fast(mode))

    def _table(self, mask: int, address: int) -> memoryview:
        """The table at ADDRESS with MASK. QEMU reallocates a table when it resizes
        it at a whole flush, so the caller reads its address each time; a view made
        for a smaller table at the same address is too short, never too long."""
        view = self._tables.get(address)
        if view is None or len(view) < (mask >> 3) + ENTRY_WORDS:
            if len(self._tables) >= _TABLE_VIEWS_KEPT:
                self._tables.clear()
            view = self._tables[address] = _words(address, mask + (1 << ENTRY_BITS))
        return view

    def entry(self, mode: int, address: int) -> int:
        """The word index in table(MODE) of the entry ADDRESS's page would use."""
        mask = self.fast(mode)[0]
        return ((address >> PAGE_BITS) & (mask >> ENTRY_BITS)) * ENTRY_WORDS

    def flush_page(self, address: int) -> bool:
        """Drop every cached translation and jump-cache block of the page holding
        linear ADDRESS. False when an mmu index caches a large page whose range holds
        it: then only a whole flush will do (indexes before it may have dropped the
        page already)."""
        page = ((address & PAGE_MASK) ^ SIGN) - SIGN  # signed, as the words are read
        words = self._words
        for desc, fast, victims in self._dirty_modes[words[self._dirty] & DIRTY_MASK]:
            if page & words[desc + LARGE_PAGE_MASK] == words[desc + LARGE_PAGE_ADDR]:
                return False  # what the indexes before lost, the whole flush loses too
            mask = words[fast]
            at = ((page >> PAGE_BITS) & (mask >> ENTRY_BITS)) * ENTRY_WORDS
            table = self._tables.get(words[fast + 1])
            if table is None or len(table) <= at:
                table = self._table(mask, words[fast + 1])
            read = table[at]  # an entry's three addresses are one page's, or -1
            if read & HIT_MASK == page or read == EMPTY and (
                    table[at + 1] & HIT_MASK == page or table[at + 2] & HIT_MASK == page):
                table[at:at + ENTRY_WORDS] = _EMPTY_ENTRY
                words[desc + USED_ENTRIES] -= 1  # a size_t: -1 is its wrap, as QEMU's
            if words[desc + VICTIM_INDEX]:  # an eviction since the last whole flush
                words[victims] = _EMPTY_VICTIMS
                words[desc + VICTIM_INDEX] = 0
        number = page >> PAGE_BITS  # jump_page_slot of the page, then of the one before
        slot = ((number << JUMP_PAGE_BITS) ^ number) & JUMP_PAGE_MASK
        words[slot:slot + JUMP_PAGE_SIZE] = _NO_BLOCKS
        number -= 1
        slot = ((number << JUMP_PAGE_BITS) ^ number) & JUMP_PAGE_MASK
        words[slot:slot + JUMP_PAGE_SIZE] = _NO_BLOCKS
        return True


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
    emulate(uc, _PROBE_CODE, _PROBE_RAM)
    return checks or [False]


def _inspect(tlb: SoftTlb, host: int) -> list[bool]:
    """check_layout's checks, inside the scratch CPU's hook: what Unicorn filled
    first, read only; then, if that is all as expected, what flush_page empties."""
    fast = [tlb.fast(mode) for mode in range(MMU_MODES)]
    if not all(_plausible_table(mask, address) for mask, address in fast):
        return [False]
    table, desc, words = tlb.table(_PROBE_MODE), tlb.desc(_PROBE_MODE), tlb._words
    rival, victim = tlb.entry(_PROBE_MODE, _PROBE_RIVAL), desc + VICTIMS
    used = sum(1 for at in range(0, len(table), ENTRY_WORDS) if table[at] != EMPTY)
    blocks = [slot for slot in range(JUMP_CACHE_SIZE) if words[slot]]
    filled = [
        tlb.dirty() == 1 << _PROBE_MODE,
        table[rival] == _PROBE_RIVAL and table[rival + ADDEND] == host,
        words[victim] == _PROBE_DATA and words[victim + ADDEND] == host,
        words[desc + VICTIM_INDEX] == 1,
        words[desc + LARGE_PAGE_ADDR] == EMPTY == words[desc + LARGE_PAGE_MASK],
        words[desc + USED_ENTRIES] == used,
        blocks == sorted([jump_slot(_PROBE_CODE), jump_slot(_PROBE_BLOCK)]),
    ]
    if not all(filled):
        return filled
    return [
        tlb.flush_page(_PROBE_DATA),
        words[victim] == EMPTY and table[rival] == _PROBE_RIVAL,
        all(words[slot] for slot in blocks),  # another page's blocks stay
        tlb.flush_page(_PROBE_BLOCK),
        words[jump_slot(_PROBE_BLOCK)] == 0 and words[jump_slot(_PROBE_CODE)] != 0,
        tlb.flush_page(_PROBE_RIVAL),
        # the block's page and the rival's entries gone from the table
        table[rival] == EMPTY and words[desc + USED_ENTRIES] == used - 2,
    ]


def _plausible_table(mask: int, address: int) -> bool:
    """Whether MASK is a table's (a power of two entries, less than 16 MiB) and the
    table's bytes at ADDRESS are readable (checked through /proc/self/mem, which
    answers an error where a load would crash)."""
    count = (mask >> ENTRY_BITS) + 1
    if mask % (1 << ENTRY_BITS) or count & (count - 1) or not 0 < mask < 1 << 24:
        return False
    try:
        with open("/proc/self/mem", "rb", buffering=0) as mem:
            return len(os.pread(mem.fileno(), mask + (1 << ENTRY_BITS), address)) == mask + (
                1 << ENTRY_BITS)
    except (OSError, OverflowError, ValueError):
        return False
