"""Unicorn's raw speed on a real workload: minikern's prime sieve, found by its symbol
in the ELF and run on a bare CPU with no hooks.

The sieve is inlined into `primes` (a ring-3 program linked into the kernel), so the
probe runs `primes` from its entry to its first call of `unmap`: the map loop (a dozen
calls) then one whole sieve, which is nearly all of the instructions. The system-call
wrappers it calls (`uptime`, `map`) are stubbed in this private copy to return 0, and
paging is off, so the user pages it sieves in are plain memory, mapped on first touch
during a counting run and zeroed again before every timed run.
"""

from dataclasses import dataclass
from pathlib import Path

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_UNMAPPED
from unicorn import x86_const as X

from pvtool.bench.bare import STACK_TOP, bare_cpu, load_code, map_range
from pvtool.bench.measure import Timing, per_second, time_runs
from pvtool.errors import UnsupportedImageError
from pvtool.image.elf import ElfImage, load_elf
from pvtool.interrupts import emulate
from pvtool.x86.isa import assemble, decode_all
from pvtool.x86.paging import PAGE_SIZE

WORKLOAD = "primes"
STUBBED = ("uptime", "map", "unmap")  # system-call wrappers: return 0 at once
STOP_BEFORE = "unmap"
RETURN_ZERO = "xor eax, eax; ret"
COUNT_SLICE = 1_000_000  # what pvtool's run loop passes as count= (run.SLICE_INSNS)


@dataclass(frozen=True)
class SieveResult:
    image: str
    function: str
    start: int
    stop: int  # the `call unmap` the run ends on
    insns: int  # exact, counted once with a code hook (not timed)
    timing: Timing  # no hooks, count=0
    counted_timing: Timing  # no hooks, count= slices as pvtool's run loop uses
    touched_pages: int

    def to_dict(self) -> dict:
        return {"image": self.image, "function": self.function, "start": self.start,
                "stop": self.stop, "insns": self.insns, "touched_pages": self.touched_pages,
                "seconds": self.timing.to_dict(),
                "insns_per_second": round(per_second(self.insns, self.timing.median)),
                "counted_seconds": self.counted_timing.to_dict(),
                "counted_insns_per_second":
                    round(per_second(self.insns, self.counted_timing.median))}


def run_sieve(path: Path, repeat: int) -> SieveResult:
    image = load_elf(path)
    start, stop = _region(image)
    pages = _count_and_touch(image, start, stop)
    insns, touched = pages
    timing = _timed(image, start, stop, touched, repeat, count=0)
    counted = _timed(image, start, stop, touched, repeat, count=COUNT_SLICE)
    return SieveResult(str(path), WORKLOAD, start, stop, insns, timing, counted,
                       len(touched))


def _region(image: ElfImage) -> tuple[int, int]:
    """From the workload's entry to its first `call unmap`."""
    if image.bits != 32:
        raise UnsupportedImageError(f"{image.path}: a {image.bits}-bit kernel: the raw "
                                    "sieve runs minikern's 32-bit code")
    symbols = {name: image.find_symbol(name) for name in (WORKLOAD, *STUBBED)}
    missing = [name for name, symbol in symbols.items() if symbol is None]
    if missing:
        raise UnsupportedImageError(f"{image.path}: no symbol {', '.join(missing)}: not "
                                    "minikern, so there is no sieve to run raw")
    entry = symbols[WORKLOAD]
    code = image.read_virtual(entry.value, entry.size)
    target = f"{symbols[STOP_BEFORE].value:#x}"
    for insn in decode_all(code, entry.value, 32):
        if insn.mnemonic == "call" and insn.op_str == target:
            return entry.value, insn.address
    raise UnsupportedImageError(f"{image.path}: {WORKLOAD} never calls {STOP_BEFORE}")


def _machine(image: ElfImage, start: int, pages=()):
    uc = bare_cpu()
    for segment in image.segments:
        map_range(uc, segment.vaddr, segment.vaddr + segment.memsz)
        uc.mem_write(segment.vaddr, image.read_virtual(segment.vaddr, segment.filesz))
    for name in STUBBED:
        address = image.find_symbol(name).value
        uc.mem_write(address, assemble(RETURN_ZERO, address, 32))
    load_code(uc, start, b"")
    for page in pages:
        map_range(uc, page, page + PAGE_SIZE)
    return uc


def _reset(uc, start: int, touched) -> None:
    """The workload expects fresh, zeroed pages and a clean stack every run."""
    for page in touched:
        uc.mem_write(page, bytes(PAGE_SIZE))
    uc.reg_write(X.UC_X86_REG_ESP, STACK_TOP - 64)
    uc.reg_write(X.UC_X86_REG_EBP, STACK_TOP - 64)


def _count_and_touch(image: ElfImage, start: int, stop: int) -> tuple[int, list[int]]:
    """One untimed run with a code hook: the exact instruction count, and the pages
    the workload touches outside the image (mapped here on first touch)."""
    uc = _machine(image, start)
    touched: list[int] = []
    count = [0]

    def on_unmapped(uc, access, address, size, value, _) -> bool:
        page = address & ~(PAGE_SIZE - 1)
        uc.mem_map(page, PAGE_SIZE)
        touched.append(page)
        return True

    def on_code(uc, address, size, _) -> None:
        count[0] += 1

    uc.hook_add(UC_HOOK_MEM_UNMAPPED, on_unmapped)
    uc.hook_add(UC_HOOK_CODE, on_code)
    _reset(uc, start, ())
    emulate(uc, start, stop)
    return count[0], touched


def _timed(image: ElfImage, start: int, stop: int, touched, repeat: int, *,
           count: int) -> Timing:
    """Hook-free runs of the region: one to translate it, then REPEAT timed. A new CPU
    per count mode: switching count= on and off flushes the translation cache."""
    uc = _machine(image, start, touched)

    def once() -> None:
        _reset(uc, start, touched)
        eip = start
        while eip != stop:
            emulate(uc, eip, stop, count)
            eip = uc.reg_read(X.UC_X86_REG_EIP)

    once()
    return time_runs(once, repeat)
