"""The page walker agrees with Unicorn's MMU (QEMU's) on the same tables.

Each probe runs `mov eax, [ebx]` or `mov [ebx], eax` at CPL 0 with CR0.WP set, in a
fresh Unicorn (a second #PF in the same instance arrives as a double fault, see
shared/UNICORN.md). Physical memory is filled with its own addresses, so the value a read
returns is the physical address the MMU chose. The #PF error code is read from the
context blob at the offset UNICORN.md lists, after checking that offset with a marker.
"""

import array

import pytest
from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, Uc
from unicorn import x86_const as U

from pvtool.x86.paging import PS, RW, P, PageFault, PagingMode, translate

MEMORY = 0x0100_0000
CODE = 0x0010_0000
ERROR_CODE_OFFSET = 5424  # unicorn 2.1.4's x86 context (shared/UNICORN.md)
DR0_OFFSET = 5440  # marker check: DR0 is stored 16 bytes after error_code
PAGE_POOL = range(0x10000, 0x20000, 0x1000)  # the 4 KiB frames the PTEs point to
LARGE_FRAME = 0x00C0_0000  # the large page's frame; its first 8 KiB are filled


def _pattern(start: int, end: int) -> bytes:
    return array.array("I", range(start, end, 4)).tobytes()


def _tables_2level(put) -> int:
    put(0x1000, 0x0 | P | RW | PS, 4)  # 0-4 MiB identity: the code
    put(0x1004, 0x2000 | P | RW, 4)  # 4-8 MiB: the page table below
    put(0x1008, LARGE_FRAME | P | PS, 4)  # 8-12 MiB: a read-only 4 MiB page
    put(0x100C, 0x3000 | P, 4)  # 12-16 MiB: a read-only table
    put(0x1010, 0x0140_0000 | P | PS | (1 << 21), 4)  # reserved bit 21
    for i, frame in enumerate(PAGE_POOL):
        put(0x2000 + 4 * i, frame | (P | RW if i % 3 == 0 else P if i % 3 == 1 else RW), 4)
        put(0x3000 + 4 * i, frame | P | RW, 4)
    return 0x1000


def _tables_pae(put) -> int:
    put(0x1000, 0x4000 | P, 8)  # PDPTE 0
    put(0x4000, 0x0 | P | RW | PS, 8)  # 0-2 MiB identity: the code
    put(0x4010, 0x2000 | P | RW, 8)  # 4-6 MiB: the page table below
    put(0x4018, LARGE_FRAME | P | PS, 8)  # 6-8 MiB: a read-only 2 MiB page
    put(0x4020, 0x3000 | P, 8)  # 8-10 MiB: a read-only table
    put(0x4028, 0x0140_0000 | P | PS | (1 << 13), 8)  # reserved bit 13
    for i, frame in enumerate(PAGE_POOL):
        put(0x2000 + 8 * i, frame | (P | RW if i % 3 == 0 else P if i % 3 == 1 else RW), 8)
        put(0x3000 + 8 * i, frame | P | RW, 8)
    return 0x1000


def _machine(mode: PagingMode):
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, MEMORY)
    uc.mem_write(PAGE_POOL.start, _pattern(PAGE_POOL.start, PAGE_POOL.stop))
    uc.mem_write(LARGE_FRAME, _pattern(LARGE_FRAME, LARGE_FRAME + 0x2000))

    def put(address, value, size):
        uc.mem_write(address, value.to_bytes(size, "little"))

    cr3 = (_tables_2level if mode is PagingMode.TWO_LEVEL else _tables_pae)(put)
    uc.reg_write(U.UC_X86_REG_CR3, cr3)
    uc.reg_write(U.UC_X86_REG_CR4, 0x10 if mode is PagingMode.TWO_LEVEL else 0x30)
    uc.reg_write(U.UC_X86_REG_CR0, uc.reg_read(U.UC_X86_REG_CR0) | 0x8001_0001)  # PG WP PE
    return uc, cr3


def _hardware(mode: PagingMode, vaddr: int, write: bool):
    """(value read, None) or (None, (cr2, error code)) from Unicorn."""
    uc, _ = _machine(mode)
    uc.mem_write(CODE, bytes.fromhex("8903" if write else "8b03"))
    uc.reg_write(U.UC_X86_REG_DR0, 0x5A5A_1234)
    faults = []

    def on_interrupt(uc, number, _):
        blob = uc.context_save().__getstate__()[0]
        assert blob[DR0_OFFSET : DR0_OFFSET + 4] == (0x5A5A_1234).to_bytes(4, "little")
        code = int.from_bytes(blob[ERROR_CODE_OFFSET : ERROR_CODE_OFFSET + 4], "little")
        faults.append((number, uc.reg_read(U.UC_X86_REG_CR2), code))
        uc.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_interrupt)
    uc.reg_write(U.UC_X86_REG_EBX, vaddr)
    uc.reg_write(U.UC_X86_REG_EAX, 0)
    uc.emu_start(CODE, CODE + 2)
    if faults:
        number, cr2, code = faults[0]
        assert number == 14
        return None, (cr2, code)
    return uc.reg_read(U.UC_X86_REG_EAX), None


def _ours(mode: PagingMode, vaddr: int, write: bool):
    uc, cr3 = _machine(mode)
    try:
        t = translate(lambda a, n: bytes(uc.mem_read(a, n)), cr3, vaddr, mode=mode,
                      write=write, nxe=False)  # fmt: skip
    except PageFault as fault:
        return None, (fault.vaddr, fault.error_code)
    return (t.paddr & ~3 if not write else 0), None


PROBES_2LEVEL = [0x0040_0000, 0x0040_1004, 0x0040_2008, 0x0040_300C, 0x0040_F000,
                 0x0041_0000, 0x0080_1234, 0x00C0_1000, 0x0100_0000]  # fmt: skip
PROBES_PAE = [0x0040_0000, 0x0040_1004, 0x0040_2008, 0x0040_300C, 0x0041_0000,
              0x0060_1234, 0x0080_1000, 0x00A0_0000, 0x00C0_0000, 0x4000_0000]  # fmt: skip


@pytest.mark.parametrize("write", [False, True], ids=["read", "write"])
@pytest.mark.parametrize(
    ("mode", "vaddr"),
    [(PagingMode.TWO_LEVEL, v) for v in PROBES_2LEVEL] + [(PagingMode.PAE, v) for v in PROBES_PAE],
)
def test_walker_agrees_with_unicorn(mode, vaddr, write):
    hardware = _hardware(mode, vaddr, write)
    if write and hardware[1] is None:
        hardware = (0, None)  # a write that succeeded reads nothing back
    assert _ours(mode, vaddr, write) == hardware
