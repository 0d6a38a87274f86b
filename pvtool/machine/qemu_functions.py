"""QEMU's own functions inside Unicorn, called directly through ctypes.

Why: Unicorn's API has no per-page TLB flush and no way to tell QEMU that pvtool
wrote over code it translated, and its CR3 write is QEMU's plus a dispatch. Unicorn
2.1.4's libunicorn exports QEMU's functions under an _x86_64 suffix (the build's
target name, whatever the guest's width), so pvtool calls the ones it needs, at the
cost of one ctypes call each:

- tlb_flush_page(CPUState *, target_ulong) and tlb_flush(CPUState *)
  (qemu/accel/tcg/cputlb.c): an invlpg and a whole flush, with QEMU's semantics
  (every mmu index, the victim table, a cached large page's range, the jump cache).
- cpu_x86_update_cr3(CPUX86State *, target_ulong) (qemu/target/i386/helper.c):
  what a guest's mov to CR3 does, cr[3] stored and the TLB flushed if paging is on.
  uc_reg_write(CR3) is this call and a store of the same value into cr[3]
  (reg_write, qemu/target/i386/unicorn.c), so nothing else is left out.
- qemu_ram_addr_from_host(struct uc_struct *, void *) (qemu/exec.c) and
  tb_invalidate_phys_range(struct uc_struct *, ram_addr_t, ram_addr_t)
  (qemu/accel/tcg/translate-all.c, declared in qemu/include/exec/ram_addr.h):
  the RAM offset of a byte of host memory Unicorn runs the guest on, and the
  dropping of every translated block made from a range of it, which QEMU does for
  its own DMA and Unicorn 2.1.4 does for no write (it keeps no dirty bitmap).

target_ulong and ram_addr_t are 64-bit in that build. The CPUState is uc_struct's
cpu: X86CPU starts with it, and its env_ptr points at the CPUX86State that
cpu_state.py finds. check_functions proves every call's effect on a scratch CPU
once per process, and a Unicorn whose functions differ is refused
(EmulatorLayoutError, exit status 70) before any guest runs.
"""

import ctypes
import os
import struct
from collections.abc import Callable
from functools import cache, partial

from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, UC_PROT_ALL, Uc
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from pvtool.interrupts import emulate
from pvtool.machine.context import EmulatorLayoutError
from pvtool.machine.cpu_state import UC_STRUCT_WORDS, find_cpu_state

SUFFIX = "_x86_64"
RAM_ADDR_INVALID = (1 << 64) - 1
# X86CPU is { CPUState; CPUNegativeOffsetState neg; CPUX86State env }: the distance
# from the CPUState to the env, and CPUState.env_ptr's offset (measured in 2.1.4's
# build; find_cpu checks both against the uc_struct and the CPU's own pointer).
CPU_TO_STATE = 0x8A50
ENV_PTR = 0x128
_WORD = ctypes.c_uint64


def _function(name: str, result, *arguments):
    """QEMU's function NAME as a plain pointer over integers (no per-call conversion
    of the binding's prototypes)."""
    address = ctypes.cast(getattr(uclib, name + SUFFIX), ctypes.c_void_p).value
    return ctypes.CFUNCTYPE(result, *arguments)(address)


_tlb_flush_page = _function("tlb_flush_page", None, ctypes.c_void_p, _WORD)
_tlb_flush = _function("tlb_flush", None, ctypes.c_void_p)
_update_cr3 = _function("cpu_x86_update_cr3", None, ctypes.c_void_p, _WORD)
_ram_addr_from_host = _function("qemu_ram_addr_from_host", _WORD, ctypes.c_void_p,
                                ctypes.c_void_p)
_invalidate_range = _function("tb_invalidate_phys_range", None, ctypes.c_void_p, _WORD, _WORD)


def find_cpu(uc: Uc, state: int) -> int:
    """The address of UC's CPUState, whose CPUX86State is at STATE: uc_struct's cpu,
    the word there equal to STATE less CPU_TO_STATE, whose env_ptr holds STATE.
    (Any pointer below STATE whose bytes hold STATE's address will not do: a heap
    object just before the CPU holds it too.) Read through /proc/self/mem, as
    cpu_state.py reads: a word that is no pointer reads as an error, never a crash."""
    cpu = state - CPU_TO_STATE
    with open("/proc/self/mem", "rb", buffering=0) as mem:
        words = _read(mem, uc._uch.value, UC_STRUCT_WORDS * 8)
        env_ptr = _read(mem, cpu + ENV_PTR, 8)
    pointers = struct.unpack_from(f"<{len(words) // 8}Q", words)
    if cpu not in pointers or env_ptr != struct.pack("<Q", state):
        raise EmulatorLayoutError("Unicorn's CPUState is not where pvtool expects it "
                                  "(install unicorn==2.1.4)")
    return cpu


def _read(mem, address: int, size: int) -> bytes:
    """SIZE bytes at ADDRESS of this process, or fewer (none) where they end."""
    try:
        return os.pread(mem.fileno(), size, address)
    except (OSError, OverflowError, ValueError):
        return b""


class QemuFunctions:
    """QEMU's functions bound to one Unicorn instance and its CPU."""

    def __init__(self, uc: Uc, state: int | None = None):
        self._uc = uc._uch.value
        self._state = find_cpu_state(uc) if state is None else state
        self._cpu = find_cpu(uc, self._state)

    def flush_tlb(self) -> None:
        """Drop every cached translation and the jump cache (tlb_flush)."""
        _tlb_flush(self._cpu)

    def flush_tlb_page(self, address: int) -> None:
        """Drop the cached translations of the page holding linear ADDRESS
        (tlb_flush_page: the whole mmu index where a cached large page covers it)."""
        _tlb_flush_page(self._cpu, address)

    def write_cr3(self, value: int) -> None:
        """CR3 = VALUE, as a guest's mov to CR3 (cpu_x86_update_cr3)."""
        _update_cr3(self._state, value)

    def bound_flush_tlb_page(self) -> Callable[[int], None]:
        """flush_tlb_page as one call of QEMU's function with this CPU bound: for the
        hypervisor's hot path (a kernel's invlpg), no method in between."""
        return partial(_tlb_flush_page, self._cpu)

    def bound_write_cr3(self) -> Callable[[int], None]:
        """write_cr3 as one call of QEMU's function with this CPU bound: for the
        hypervisor's hot path (a context switch's NEW_BASEPTR), no method in between."""
        return partial(_update_cr3, self._state)

    def ram_offset(self, host: int) -> int | None:
        """The RAM offset (ram_addr_t) of the byte at HOST, an address of this process
        inside memory Unicorn maps; None elsewhere."""
        offset = _ram_addr_from_host(self._uc, host)
        return None if offset == RAM_ADDR_INVALID else offset

    def invalidate_code(self, start: int, end: int) -> None:
        """Drop the blocks translated from RAM offsets [START, END)
        (tb_invalidate_phys_range): the next run of that code translates it again."""
        _invalidate_range(self._uc, start, end)


# check_functions' scratch machine: 32-bit, ring 0, 2-level paging over RAM of ours.
_RAM = 0x100000
_CODE, _CALLED, _STACK = 0x1000, 0x2000, 0x7000
_DIRECTORY, _TABLE, _DIRECTORY2, _TABLE2 = 0x10000, 0x11000, 0x12000, 0x13000
_FLUSHED, _KEPT = 0x8000, 0xA000  # remapped onto the next frame; only _FLUSHED flushed
_SWITCHED = 0xC000  # what _FLUSHED maps to under _DIRECTORY2
_PRESENT_WRITABLE = 3
_MARKS = {0x8000: 0xA1, 0x9000: 0xB2, 0xA000: 0xC3, 0xB000: 0xD4, 0xC000: 0xE5}
_MOV_EDI = b"\xbf"  # mov edi, imm32


def _call(at: int) -> bytes:
    """call _CALLED, placed at AT."""
    return b"\xe8" + (_CALLED - (at + 5)).to_bytes(4, "little", signed=True)


_TEXT = b"".join((
    b"\xa1" + _FLUSHED.to_bytes(4, "little"),  # mov eax, [_FLUSHED]
    b"\x8b\x1d" + _KEPT.to_bytes(4, "little"),  # mov ebx, [_KEPT]
    b"\xcd\x80",  # 1: both remapped, _FLUSHED's page flushed
    b"\x8b\x0d" + _FLUSHED.to_bytes(4, "little"),  # mov ecx, [_FLUSHED]
    b"\x8b\x15" + _KEPT.to_bytes(4, "little"),  # mov edx, [_KEPT]
    b"\xcd\x80",  # 2: whole flush
    b"\x8b\x15" + _KEPT.to_bytes(4, "little"),  # mov edx, [_KEPT]
    b"\xcd\x80",  # 3: CR3 switched
    b"\x8b\x35" + _FLUSHED.to_bytes(4, "little"),  # mov esi, [_FLUSHED]
    _call(_CODE + 41),
    b"\xcd\x80",  # 4: _CALLED rewritten in RAM, its blocks invalidated
    _call(_CODE + 48),
    b"\xcd\x80",  # 5: the end
))
_CALLED_TEXT = _MOV_EDI + (1).to_bytes(4, "little") + b"\xc3"  # mov edi, 1; ret


@cache
def check_functions() -> None:
    """Prove each function's effect on a scratch CPU, once per process: a page
    flush drops that page's translation and not another's, a whole flush both, the
    CR3 write switches address space and reads back, and code rewritten in RAM runs
    new once invalidated. Raise EmulatorLayoutError if any differs."""
    if not all(_probe()):
        raise EmulatorLayoutError("QEMU's functions in Unicorn do not behave as "
                                  "pvtool expects (install unicorn==2.1.4)")


def _probe() -> list[bool]:
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    ram = ctypes.create_string_buffer(_RAM)
    host = ctypes.addressof(ram)
    uc.mem_map_ptr(0, _RAM, UC_PROT_ALL, host)
    _build_tables(ram)
    ram[_CODE:_CODE + len(_TEXT)] = _TEXT
    ram[_CALLED:_CALLED + len(_CALLED_TEXT)] = _CALLED_TEXT
    uc.reg_write(X.UC_X86_REG_ESP, _STACK)
    uc.reg_write(X.UC_X86_REG_CR3, _DIRECTORY)
    uc.reg_write(X.UC_X86_REG_CR0, 0x80000011)  # PG, ET, PE
    qemu = QemuFunctions(uc)
    steps = iter((_step_flush_page, _step_flush, _step_cr3, _step_invalidate, _step_end))
    checks: list[bool] = []

    def hook(uc: Uc, _intno: int, _data) -> None:
        checks.extend(next(steps)(uc, qemu, ram, host))

    uc.hook_add(UC_HOOK_INTR, hook)
    try:
        emulate(uc, _CODE, _CODE + len(_TEXT))
    except Exception:  # noqa: BLE001 - any failure of the scratch run is a failed check
        return [False]
    return checks if len(checks) == 10 else [False]


def _build_tables(ram: ctypes.Array) -> None:
    """_DIRECTORY maps the first 4 MiB through _TABLE identity; _DIRECTORY2 the same
    through _TABLE2 but for _FLUSHED, which it maps onto _SWITCHED."""
    entries = [page << 12 | _PRESENT_WRITABLE for page in range(1024)]
    struct.pack_into("<1024I", ram, _TABLE, *entries)
    entries[_FLUSHED >> 12] = _SWITCHED | _PRESENT_WRITABLE
    struct.pack_into("<1024I", ram, _TABLE2, *entries)
    struct.pack_into("<I", ram, _DIRECTORY, _TABLE | _PRESENT_WRITABLE)
    struct.pack_into("<I", ram, _DIRECTORY2, _TABLE2 | _PRESENT_WRITABLE)
    for frame, mark in _MARKS.items():
        struct.pack_into("<I", ram, frame, mark)


def _step_flush_page(uc: Uc, qemu: QemuFunctions, ram: ctypes.Array, _host: int) -> list[bool]:
    for page in (_FLUSHED, _KEPT):
        struct.pack_into("<I", ram, _TABLE + (page >> 12) * 4, page + 0x1000 | _PRESENT_WRITABLE)
    qemu.flush_tlb_page(_FLUSHED)
    return [uc.reg_read(X.UC_X86_REG_EAX) == _MARKS[_FLUSHED],
            uc.reg_read(X.UC_X86_REG_EBX) == _MARKS[_KEPT]]


def _step_flush(uc: Uc, qemu: QemuFunctions, _ram, _host: int) -> list[bool]:
    qemu.flush_tlb()
    return [uc.reg_read(X.UC_X86_REG_ECX) == _MARKS[_FLUSHED + 0x1000],
            uc.reg_read(X.UC_X86_REG_EDX) == _MARKS[_KEPT]]  # stale: only one page went


def _step_cr3(uc: Uc, qemu: QemuFunctions, _ram, _host: int) -> list[bool]:
    qemu.write_cr3(_DIRECTORY2)
    return [uc.reg_read(X.UC_X86_REG_EDX) == _MARKS[_KEPT + 0x1000],
            uc.reg_read(X.UC_X86_REG_CR3) == _DIRECTORY2]


def _step_invalidate(uc: Uc, qemu: QemuFunctions, ram: ctypes.Array, host: int) -> list[bool]:
    ram[_CALLED + 1:_CALLED + 5] = (2).to_bytes(4, "little")
    base, called = qemu.ram_offset(host), qemu.ram_offset(host + _CALLED)
    if base is None or called is None:
        return [False]
    qemu.invalidate_code(called, called + len(_CALLED_TEXT))
    return [uc.reg_read(X.UC_X86_REG_ESI) == _MARKS[_SWITCHED],
            uc.reg_read(X.UC_X86_REG_EDI) == 1,
            called - base == _CALLED and qemu.ram_offset(8) is None]


def _step_end(uc: Uc, _qemu, _ram, _host: int) -> list[bool]:
    uc.emu_stop()
    return [uc.reg_read(X.UC_X86_REG_EDI) == 2]
