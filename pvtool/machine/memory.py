"""Guest memory: physical RAM that pvtool holds and reads in place, and guest-virtual
access through pvtool's own page walker (x86/paging.py), since Unicorn's accesses are
physical once paging is on.

Why reads are in place: the RAM (and the hypervisor's own frames) are anonymous
mappings of this process that Unicorn runs the guest on (mem_map_ptr), so the bytes
there are the guest's, every store of its made by the time a hook runs or a slice
ends. A read through Unicorn (uc_mem_read: a call through ctypes, which releases and
takes back the GIL, then Unicorn's region lookup and QEMU's address_space_read) costs
about an empty hook for a handful of bytes, a slice of the mapping a Python operation.

Why writes are in place too, each followed by QEMU's invalidation of the code it
translated from the bytes written: Unicorn 2.1.4 keeps no dirty bitmap, so neither
uc_mem_write nor a store in place drops a block already translated from the page
(tests/machine/test_dma_over_code.py and tests/hv/test_code_overwrite.py show it),
and a guest would go on running the old code after a disk read by DMA, a grant copy
or a hypercall's copy into a page that held code. QEMU drops it for its own DMA; here
every write pvtool makes into memory it holds calls tb_invalidate_phys_range on the
range (machine/qemu_functions.py). That costs one ctypes call (0.6-0.9 us), the store
itself a slice assignment (0.1 us), so an 8-byte write costs what uc_mem_write alone
did (1.3 us). One write skips it: a kernel's store into its own L1, which ptwr emulates
(store_entry: the hot path of every PTE update, where the call would be most of the
write's cost); a page table holds no code, and a guest that executes one anyway runs a
translation of bytes it wrote itself. Writes into a device's range still go through
uc_mem_write, which reaches its MMIO callback.
"""

import ctypes
import mmap
import struct
from collections.abc import Callable
from functools import cached_property

from unicorn import UC_PROT_ALL, Uc
from unicorn.unicorn_py3.unicorn import uclib

from pvtool.machine.cpu import CR0, CR3, CR4, Cpu
from pvtool.x86.paging import PAGE_SHIFT, PAGE_SIZE, PageFault, PagingMode, Translation, translate
from pvtool.x86.registers import CR0_PG, CR0_WP, CR4_PAE, CR4_PSE

MAX_TRANSLATIONS = 4096  # kept translations; beyond, they are all forgotten
U32 = struct.Struct("<I")
# uc_mem_read and uc_mem_write as plain function pointers over integers: half the cost
# of the binding's, which converts every argument and builds a bytearray.
_MEM_ACCESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64,
                               ctypes.c_void_p, ctypes.c_size_t)
_mem_read = _MEM_ACCESS(ctypes.cast(uclib.uc_mem_read, ctypes.c_void_p).value)
_mem_write = _MEM_ACCESS(ctypes.cast(uclib.uc_mem_write, ctypes.c_void_p).value)


class UnassignedMemory(Exception):
    """pvtool itself read or wrote physical memory with neither RAM nor a device
    behind it (on the guest's behalf: a gate, a stack, an instruction's bytes). The
    machine ends the run as it does for the guest's own such access (machine/mmio.py)."""

    def __init__(self, address: int, size: int):
        super().__init__(f"no memory at physical {address:#x} (+{size:#x})")
        self.address = address


class GuestMemory:
    """Physical RAM plus guest-virtual access through the current page tables."""

    def __init__(self, uc: Uc, cpu: Cpu):
        self.uc = uc
        self.cpu = cpu
        self._address_mask = cpu.width.mask  # virtual addresses wrap there
        self._handle = uc._uch.value
        self._buffer = ctypes.create_string_buffer(PAGE_SIZE)  # most reads fit a page
        self._buffer_address = ctypes.addressof(self._buffer)
        # (CR3, page, write, user) -> physical page, while keep_translations is on, and
        # the kept translations by the address of the leaf entry each went through
        self._translations: dict[tuple[int, int, bool, bool], int] | None = None
        self._through: dict[int, list[tuple[int, int, bool, bool]]] = {}
        self._ram: mmap.mmap | bytes = b""  # map_ram's, from physical 0
        self._ram_size = 0
        # map_host's (base, end, bytes, the RAM offset QEMU gives its first byte)
        self._host: list[tuple[int, int, mmap.mmap, int]] = []
        self._invalidate_code = cpu.qemu.invalidate_code

    # -- memory the host holds ---------------------------------------------------------
    def map_ram(self, size: int) -> None:
        """The machine's RAM: SIZE bytes (whole pages) of zeroed physical memory from
        address 0, held by pvtool (map_host) and read in place by every read_phys."""
        self._ram = self.map_host(0, size)
        self._ram_size = size

    def map_host(self, base: int, size: int) -> mmap.mmap:
        """Map SIZE bytes (whole pages) of zeroed physical memory at BASE from an
        anonymous private mapping of pvtool's own, which read_phys and host_view read
        in place. Its pages are allocated when first touched, as Unicorn's own RAM is
        (3 GiB of --memory costs what the guest uses), and private: a child process
        forked later gets a copy, not the same RAM."""
        buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
        address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
        self.uc.mem_map_ptr(base, size, UC_PROT_ALL, address)
        self._host.append((base, base + size, buffer, self.cpu.qemu.ram_offset(address)))
        return buffer

    def host_view(self, address: int, size: int) -> memoryview | None:
        """The SIZE bytes at physical ADDRESS, read in place, where pvtool holds them
        (None elsewhere): what the guest stores shows at once, and reading costs no
        call into Unicorn. Read only: a store through it would not tell Unicorn that
        code it translated changed (the module's docstring)."""
        for base, end, buffer, _ in self._host:
            if base <= address and address + size <= end:
                return memoryview(buffer)[address - base:address - base + size].toreadonly()
        return None

    # -- physical ------------------------------------------------------------------
    def read_phys(self, addr: int, size: int) -> bytes:
        """SIZE bytes at physical ADDR: in place where pvtool holds the memory (RAM
        first: the page walker's and every hypercall argument's), else through Unicorn,
        which reads a device's or raises UnassignedMemory where nothing is."""
        if addr >= 0 and addr + size <= self._ram_size:
            return self._ram[addr:addr + size]
        for base, end, buffer, _ in self._host:
            if base <= addr and addr + size <= end:
                return buffer[addr - base:addr - base + size]
        return self._read_through_unicorn(addr, size)

    def _read_through_unicorn(self, addr: int, size: int) -> bytes:
        if size > PAGE_SIZE:
            buffer = ctypes.create_string_buffer(size)
            if _mem_read(self._handle, addr, ctypes.addressof(buffer), size):
                raise UnassignedMemory(addr, size)
            return buffer.raw
        if _mem_read(self._handle, addr, self._buffer_address, size):
            raise UnassignedMemory(addr, size)
        return ctypes.string_at(self._buffer_address, size)

    def write_phys(self, addr: int, data: bytes) -> None:
        """DATA at physical ADDR: in place where pvtool holds the memory, and QEMU
        drops what it translated from those bytes (the module's docstring); else
        through Unicorn, which writes a device's or raises UnassignedMemory where
        nothing is."""
        size = len(data)
        for base, end, buffer, offset in self._host:
            if base <= addr and addr + size <= end:
                start = addr - base
                buffer[start:start + size] = data
                self._invalidate_code(offset + start, offset + start + size)
                return
        data = bytes(data)
        if _mem_write(self._handle, addr, data, size):
            raise UnassignedMemory(addr, size)
        for base, end, _, offset in self._host:  # a write across memories
            if base < addr + size and addr < end:
                self._invalidate_code(offset + max(addr, base) - base,
                                      offset + min(addr + size, end) - base)

    def store_entry(self, addr: int, entry: struct.Struct, value: int) -> None:
        """VALUE packed by ENTRY (a page-table entry's format) at physical ADDR, in
        place in RAM (a Python operation where uc_mem_write is a call into Unicorn,
        0.8 us), dropping no translated code: for page-table entries only. A page
        table is no code; a guest that runs its own page table anyway runs what it
        wrote there itself, a stale translation of it included, which gives it nothing
        it could not run from any page of its own, and the hypervisor's checks read
        memory, never translations. Outside RAM (no page table is there), through
        write_phys."""
        if addr >= 0 and addr + entry.size <= self._ram_size:
            entry.pack_into(self._ram, addr, value)
        else:
            self.write_phys(addr, entry.pack(value))

    def load_entry(self, addr: int, entry: struct.Struct) -> int:
        """The value ENTRY (a page-table entry's format) unpacks at physical ADDR:
        store_entry's read, in place in RAM with no bytes made (each validated entry
        and each kernel store into a page table reads one), else through read_phys."""
        if addr >= 0 and addr + entry.size <= self._ram_size:
            return entry.unpack_from(self._ram, addr)[0]
        return entry.unpack(self.read_phys(addr, entry.size))[0]

    def read_u32(self, addr: int) -> int:
        return self.load_entry(addr, U32)

    def write_u32(self, addr: int, value: int) -> None:
        self.write_phys(addr, U32.pack(value & 0xFFFFFFFF))

    # -- guest-virtual -------------------------------------------------------------
    def paging_mode(self) -> PagingMode | None:
        """None with paging off; 4-level in long mode (a 64-bit CPU enters it from
        protected mode, with 2-level or PAE paging possibly on before)."""
        if not self.cpu.read(CR0) & CR0_PG:
            return None
        if self.cpu.long_mode:
            return PagingMode.FOUR_LEVEL
        return PagingMode.PAE if self.cpu.read(CR4) & CR4_PAE else PagingMode.TWO_LEVEL

    def keep_translations(self) -> None:
        """Remember each translation, per CR3, page and kind of access, instead of
        walking the tables again: only for tables whose every change is known, with
        CR0 and CR4 fixed. Their owner calls forget_translations after each change (the
        PV hypervisor validates every change: hv/validator.py)."""
        self._translations = {}

    def forget_translations(self) -> None:
        if self._translations:
            self._translations.clear()
            self._through.clear()

    def forget_translations_through(self, leaf_entry: int) -> None:
        """Forget the translations that went through the leaf entry at physical
        LEAF_ENTRY (an L1 entry): the only ones a change of that entry alters. A change
        of an upper-level entry needs forget_translations."""
        keys = self._through.pop(leaf_entry, None)
        if keys:
            for key in keys:
                self._translations.pop(key, None)

    def virt_to_phys(self, vaddr: int, *, write: bool = False, user: bool = False) -> int:
        """The physical address of a guest-virtual one, or PageFault."""
        kept = self._translations
        if kept is None:
            return self._translate(vaddr, write, user)
        key = (self._cr3()[0], vaddr >> PAGE_SHIFT, write, user)
        page = kept.get(key)
        if page is None:
            mode = self.paging_mode()
            if mode is None:  # paging off maps nothing to remember
                return vaddr & 0xFFFFFFFF
            if len(kept) >= MAX_TRANSLATIONS:
                self.forget_translations()
            where = self._walk(vaddr & ~(PAGE_SIZE - 1), write, user, mode)
            page = kept[key] = where.paddr
            self._through.setdefault(where.pte_addr, []).append(key)
        return page | vaddr & (PAGE_SIZE - 1)

    @cached_property
    def _cr3(self) -> Callable[[], tuple[int]]:
        """(CR3,), read in place: the key of every kept translation."""
        return self.cpu.reader((CR3,))

    def _translate(self, vaddr: int, write: bool, user: bool) -> int:
        mode = self.paging_mode()
        if mode is None:
            return vaddr & 0xFFFFFFFF  # paging off: 32-bit linear addresses
        return self._walk(vaddr, write, user, mode).paddr

    def _walk(self, vaddr: int, write: bool, user: bool, mode: PagingMode) -> Translation:
        return translate(self.read_phys, self.cpu.read(CR3), vaddr, mode=mode,
                         write=write, user=user, wp=bool(self.cpu.read(CR0) & CR0_WP),
                         pse=bool(self.cpu.read(CR4) & CR4_PSE))

    def walk(self, vaddr: int) -> Translation:
        """The current page tables' translation of VADDR, permissions aside."""
        mode = self.paging_mode() or PagingMode.TWO_LEVEL
        return translate(self.read_phys, self.cpu.read(CR3), vaddr, mode=mode, wp=False,
                         pse=bool(self.cpu.read(CR4) & CR4_PSE))

    def read_virt(self, vaddr: int, size: int, *, user: bool = False) -> bytes:
        vaddr &= self._address_mask
        offset = vaddr & (PAGE_SIZE - 1)
        if 0 < size <= PAGE_SIZE - offset:  # within a page: most reads
            # A kept translation into RAM, inline: a hypercall's argument, every time.
            kept = self._translations
            page = kept.get((self._cr3()[0], vaddr >> PAGE_SHIFT, False, user)) \
                if kept else None
            if page is not None and page + PAGE_SIZE <= self._ram_size:
                return self._ram[page + offset:page + offset + size]
            return self.read_phys(self.virt_to_phys(vaddr, user=user), size)
        out = bytearray()
        for chunk_addr, chunk_size in _page_chunks(vaddr, size, self._address_mask):
            out += self.read_phys(self.virt_to_phys(chunk_addr, user=user), chunk_size)
        return bytes(out)

    def write_virt(self, vaddr: int, data: bytes, *, user: bool = False) -> None:
        # Translate every page first, so a fault leaves memory untouched.
        targets = [(self.virt_to_phys(a, write=True, user=user), n)
                   for a, n in _page_chunks(vaddr, len(data), self._address_mask)]
        pos = 0
        for paddr, n in targets:
            self.write_phys(paddr, data[pos:pos + n])
            pos += n

    def read_virt_u32(self, vaddr: int) -> int:
        return U32.unpack(self.read_virt(vaddr, 4))[0]


def _page_chunks(vaddr: int, size: int, mask: int):
    """Split [vaddr, vaddr+size) at page boundaries, addresses wrapping at MASK."""
    while size > 0:
        n = min(size, PAGE_SIZE - (vaddr & (PAGE_SIZE - 1)))
        yield vaddr & mask, n
        vaddr += n
        size -= n


__all__ = ["GuestMemory", "PageFault", "PAGE_SIZE"]
