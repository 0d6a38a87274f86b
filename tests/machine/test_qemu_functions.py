"""machine/qemu_functions.py: the start-up check of QEMU's functions, the CPUState
and RAM offsets found, and a page flush inside a cached large page (QEMU flushes
that mmu index whole), on a bare Unicorn with paging on. (The per-page flush
itself, on data and code pages, in the kernel's and the user's mmu index, 2-level,
PAE and 4-level, is proved with PV guests: tests/hv/test_tlb.py.)"""

import ctypes
import struct

import pytest
from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, UC_PROT_ALL, Uc
from unicorn import x86_const as X

from pvtool.machine import qemu_functions
from pvtool.machine.context import EmulatorLayoutError
from pvtool.machine.cpu import EAX, EBX, Cpu
from pvtool.machine.cpu_state import find_cpu_state

RAM = 16 << 20
CODE = 0x1000
DIRECTORY, TABLE = 0x10000, 0x11000
P, RW, US, PS = 1, 2, 4, 0x80
SMALL = 0x200000  # a 4 KiB page of the first 4 MiB, identity-mapped by TABLE
SMALL_NEW_FRAME = 0x300000
LARGE = 0x405000  # inside the 4 MiB page at 4 MiB
LARGE_NEW_FRAME = 0x800000
OLD, NEW = 0x01D01D01, 0x0E70E70E


def _does_nothing(*_args) -> None:
    """A QEMU function that has no effect."""


@pytest.mark.parametrize("name", [
    "flush_tlb_page", "flush_tlb", "write_cr3", "invalidate_code"])
def test_the_start_up_check_refuses_a_function_that_does_not_do_its_job(monkeypatch, name):
    """Each function's effect is proved on a scratch CPU: one that does nothing (a
    Unicorn whose export differs) fails the check, with exit status 70."""
    monkeypatch.setattr(qemu_functions.QemuFunctions, name, _does_nothing)
    qemu_functions.check_functions.cache_clear()
    try:
        with pytest.raises(EmulatorLayoutError, match="do not behave") as raised:
            qemu_functions.check_functions()
        assert raised.value.exit_status == 70
    finally:
        monkeypatch.undo()
        qemu_functions.check_functions.cache_clear()
    qemu_functions.check_functions()  # the real functions pass again


def test_a_ram_offset_is_none_outside_memory_unicorn_maps():
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    ram = ctypes.create_string_buffer(0x10000)
    uc.mem_map_ptr(0, 0x10000, UC_PROT_ALL, ctypes.addressof(ram))
    qemu = qemu_functions.QemuFunctions(uc)
    first = qemu.ram_offset(ctypes.addressof(ram))
    assert first is not None
    assert qemu.ram_offset(ctypes.addressof(ram) + 0xFFFF) == first + 0xFFFF
    assert qemu.ram_offset(ctypes.addressof(ram) + 0x10000) is None


def test_the_cpu_found_is_uc_structs_and_points_at_the_state():
    """find_cpu's CPUState is a word of the uc_struct, and its env_ptr holds the
    CPUX86State's address, for every Unicorn of the build."""
    for _ in range(2):
        uc = Uc(UC_ARCH_X86, UC_MODE_32)
        state = find_cpu_state(uc)
        cpu = qemu_functions.find_cpu(uc, state)
        words = struct.unpack("<256Q", ctypes.string_at(uc._uch.value, 256 * 8))
        assert cpu in words
        assert struct.unpack("<Q", ctypes.string_at(cpu + qemu_functions.ENV_PTR, 8))[0] == state


@pytest.mark.parametrize("name, wrong", [("CPU_TO_STATE", 0x8A48), ("ENV_PTR", 0x120)])
def test_a_cpu_not_where_expected_is_refused(monkeypatch, name, wrong):
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    state = find_cpu_state(uc)
    monkeypatch.setattr(qemu_functions, name, wrong)
    with pytest.raises(EmulatorLayoutError, match="CPUState is not where"):
        qemu_functions.find_cpu(uc, state)


def paged_cpu(text: bytes) -> tuple[Cpu, ctypes.Array]:
    """A CPU at ring 0 with 2-level paging and PSE, running TEXT at CODE: the first
    4 MiB mapped by 4 KiB pages, the next 4 MiB by one large page, both identity."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    ram = ctypes.create_string_buffer(RAM)
    uc.mem_map_ptr(0, RAM, UC_PROT_ALL, ctypes.addressof(ram))
    entries = struct.pack("<1024I", *(page << 12 | P | RW | US for page in range(1024)))
    uc.mem_write(TABLE, entries)
    uc.mem_write(DIRECTORY, struct.pack("<2I", TABLE | P | RW | US, 0x400000 | P | RW | US | PS))
    uc.mem_write(CODE, text)
    for address, frame in ((SMALL, OLD), (SMALL_NEW_FRAME, NEW), (LARGE, OLD),
                           (LARGE_NEW_FRAME + LARGE % 0x400000, NEW)):
        uc.mem_write(address, struct.pack("<I", frame))
    uc.reg_write(X.UC_X86_REG_CR3, DIRECTORY)
    uc.reg_write(X.UC_X86_REG_CR4, 0x10)  # PSE
    uc.reg_write(X.UC_X86_REG_CR0, 0x80000011)  # PG, ET, PE
    return Cpu(uc), ram


def load(address: int, register: str) -> bytes:
    """mov REGISTER, [ADDRESS]."""
    opcode = {"eax": b"\xa1", "ebx": b"\x8b\x1d"}[register]
    return opcode + struct.pack("<I", address)


def remap_then_flush(read_large_first: bool) -> tuple[int, int]:
    """Read the small page (and the large one if READ_LARGE_FIRST), remap both onto
    new frames in the page tables, flush only the large page's 4 KiB page from a hook,
    and read both again: what the CPU then sees in the large and the small page."""
    text = ((load(LARGE, "eax") if read_large_first else b"") + load(SMALL, "ebx")
            + b"\xcd\x80" + load(LARGE, "eax") + load(SMALL, "ebx") + b"\xcd\x80")
    cpu, _ram = paged_cpu(text)
    seen = []

    def hook(uc, intno, _data):
        if not seen:
            uc.mem_write(TABLE + (SMALL >> 12) * 4, struct.pack("<I", SMALL_NEW_FRAME | P | RW))
            uc.mem_write(DIRECTORY + 4, struct.pack("<I", LARGE_NEW_FRAME | P | RW | PS))
            cpu.flush_tlb_page(LARGE)
            seen.append(None)
        else:
            seen[:] = [cpu.read(EAX), cpu.read(EBX)]
            uc.emu_stop()

    cpu.uc.hook_add(UC_HOOK_INTR, hook)
    cpu.uc.emu_start(CODE, CODE + len(text))
    return seen[0], seen[1]


def test_a_cached_large_page_makes_a_page_flush_in_it_a_whole_flush():
    """QEMU keeps one range of large pages per mmu index and drops the whole index
    for a page in it (tlb_flush_page_locked), which Cpu.flush_tlb_page calls. The small page,
    not flushed itself, shows its new frame too."""
    assert remap_then_flush(read_large_first=True) == (NEW, NEW)


def test_with_no_large_page_cached_only_that_page_is_flushed():
    """The same flush with no large page cached: the small page keeps its stale
    translation, as on hardware."""
    assert remap_then_flush(read_large_first=False) == (NEW, OLD)


def test_the_bound_cr3_write_switches_address_spaces_as_a_mov_to_cr3():
    """QemuFunctions.bound_write_cr3 (the hypervisor's NEW_BASEPTR writes CR3 through
    it): CR3 holds the new directory, and a page read under the old one is read again
    through the new one's tables, not a stale translation."""
    directory2, table2 = 0x12000, 0x13000
    text = load(SMALL, "ebx") + b"\xcd\x80" + load(SMALL, "ebx") + b"\xcd\x80"
    cpu, _ram = paged_cpu(text)
    write_cr3, seen = cpu.qemu.bound_write_cr3(), []
    entries = [page << 12 | P | RW | US for page in range(1024)]
    entries[SMALL >> 12] = SMALL_NEW_FRAME | P | RW | US
    cpu.uc.mem_write(table2, struct.pack("<1024I", *entries))
    cpu.uc.mem_write(directory2, struct.pack("<I", table2 | P | RW | US))

    def hook(uc, _intno, _data):
        if not seen:
            seen.append(cpu.read(EBX))
            write_cr3(directory2)
        else:
            seen.extend((cpu.read(EBX), uc.reg_read(X.UC_X86_REG_CR3)))
            uc.emu_stop()

    cpu.uc.hook_add(UC_HOOK_INTR, hook)
    cpu.uc.emu_start(CODE, CODE + len(text))
    assert seen == [OLD, NEW, directory2]
