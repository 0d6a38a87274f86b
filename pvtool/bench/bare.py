"""A bare Unicorn x86 CPU in ring 0, paging off (32-bit protected mode, or 64-bit
long mode, which Unicorn starts without paging: XEN-ABI64.md, part 2): no devices and
no hooks unless a probe adds its own. The baseline pvtool's machine is measured
against."""

from unicorn import UC_ARCH_X86, UC_MODE_32, UC_MODE_64, Uc
from unicorn import x86_const as X

from pvtool.x86.paging import PAGE_SIZE

STACK_TOP = 0x80000  # below the 1 MiB where kernels load; the probes map it
MODES = {32: UC_MODE_32, 64: UC_MODE_64}


def bare_cpu(bits: int = 32) -> Uc:
    return Uc(UC_ARCH_X86, MODES[bits])


def map_range(uc: Uc, start: int, end: int) -> None:
    """Map [start, end) rounded out to pages, skipping pages already mapped."""
    mapped = [(begin, last) for begin, last, _ in uc.mem_regions()]
    page = start & ~(PAGE_SIZE - 1)
    while page < end:
        if not any(begin <= page <= last for begin, last in mapped):
            uc.mem_map(page, PAGE_SIZE)
        page += PAGE_SIZE


def load_code(uc: Uc, address: int, code: bytes) -> None:
    map_range(uc, address, address + len(code))
    uc.mem_write(address, code)
    map_range(uc, STACK_TOP - 4 * PAGE_SIZE, STACK_TOP)
    uc.reg_write(X.UC_X86_REG_ESP, STACK_TOP)  # RSP's low half in long mode
