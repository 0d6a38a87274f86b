"""Unicorn 2.1.4's CPU context blob: the offsets pvtool reads and writes in it, found
with marker values once per process (fail loudly if Unicorn moved them), and the
segment caches and hidden flags that no register write can set.

The blob is QEMU's CPUX86State. pvtool needs it where Unicorn's API falls short
(UNICORN.md, XEN-ABI64.md Part 2): the CPL and mode bits of `hflags`, a fault's error
code, `old_exception` (which Unicorn never resets), `exception_is_int` (whether an
instruction or a fault raised the interruption being hooked), EFER with its LMA bit (which wrmsr
cannot clear), and the segment caches (a 64-bit `reg_write` of a selector stores only
the selector, and no write lowers the CPL).
"""

import ctypes
import struct
from dataclasses import dataclass
from functools import cache

from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, UC_MODE_64, Uc
from unicorn import x86_const as X

from pvtool.errors import PvtoolError
from pvtool.interrupts import emulate
from pvtool.x86.descriptors import SegmentDescriptor
from pvtool.x86.msrs import EFER_LMA, EFER_LME, EFER_SCE, IA32_EFER

# Offsets in unicorn 2.1.4's uc_context, checked by probe_layout.
HFLAGS = 216
SEGMENTS = 224  # segs[6]: ES, CS, SS, DS, FS, GS (QEMU's R_ES..R_GS)
SEGMENT_SIZE = 24  # selector u32 @0, base u64 @8, limit u32 @16, flags u32 @20
EFER = 632
ERROR_CODE = 5424
EXCEPTION_IS_INT = 5428  # 1 when `int n`, int3 or into raised the interruption
OLD_EXCEPTION = 5536
ES_INDEX, CS_INDEX, SS_INDEX, DS_INDEX, FS_INDEX, GS_INDEX = range(6)

# QEMU's hflags (target/i386/cpu.h) and segment-cache flags (the descriptor's high
# dword, as QEMU keeps it).
HF_CPL = 0x3
HF_CS32 = 1 << 4
HF_SS32 = 1 << 5
HF_ADDSEG = 1 << 6
HF_PE = 1 << 7
HF_LMA = 1 << 14
HF_CS64 = 1 << 15
DESC_B = 1 << 22  # D/B
DESC_L = 1 << 21
DESC_DPL_SHIFT = 13

_PROBE_SELECTOR = 0x1234  # a selector past the GDT limit: #GP with this error code
_PROBE_EFER = EFER_LME | EFER_LMA | EFER_SCE  # as UC_MODE_64 starts, SCE the marker


class EmulatorLayoutError(PvtoolError):
    """Unicorn's internal CPU layout is not the one pvtool was written against."""

    exit_status = 70


@dataclass(frozen=True)
class ContextLayout:
    hflags: int
    error_code: int
    exception_is_int: int
    old_exception: int
    segments: int
    efer: int


@dataclass(frozen=True)
class SegmentCache:
    """What the CPU holds for a loaded segment register: QEMU's SegmentCache."""

    selector: int
    base: int
    limit: int
    flags: int  # the descriptor's high dword, accessed bit set

    @classmethod
    def of(cls, selector: int, descriptor: SegmentDescriptor) -> "SegmentCache":
        """The cache a load of SELECTOR naming DESCRIPTOR leaves (marked accessed)."""
        high = descriptor.to_int() >> 32 | 1 << 8
        return cls(selector, descriptor.base, descriptor.byte_limit, high)

    @property
    def dpl(self) -> int:
        return self.flags >> DESC_DPL_SHIFT & 3


def read_segment(blob: int, layout: ContextLayout, index: int) -> SegmentCache:
    address = blob + layout.segments + index * SEGMENT_SIZE
    selector, base, limit, flags = struct.unpack_from(
        "<I4xQII", (ctypes.c_char * SEGMENT_SIZE).from_address(address))
    return SegmentCache(selector, base, limit, flags)


def write_segment(blob: int, layout: ContextLayout, index: int, cache: SegmentCache) -> None:
    address = blob + layout.segments + index * SEGMENT_SIZE
    struct.pack_into("<I4xQII", (ctypes.c_char * SEGMENT_SIZE).from_address(address), 0,
                     cache.selector, cache.base, cache.limit, cache.flags)


def hflags_for(hflags: int, code: SegmentCache, stack: SegmentCache, *, cr0_pe: bool,
               long_mode: bool) -> int:
    """HFLAGS with the bits QEMU derives from CS and SS (cpu_x86_load_seg_cache): CPL
    from SS's DPL, the 16/32/64-bit code and stack sizes, and, outside long mode,
    ADDSEG (set: segment bases are added; pvtool's loads are flat, and setting it is
    always correct, only slower)."""
    hflags &= ~(HF_CPL | HF_CS32 | HF_SS32 | HF_ADDSEG | HF_PE | HF_LMA | HF_CS64)
    hflags |= stack.dpl | (HF_PE if cr0_pe else 0)
    if long_mode:
        hflags |= HF_LMA
    if long_mode and code.flags & DESC_L:
        return hflags | HF_CS32 | HF_SS32 | HF_CS64
    hflags |= (HF_CS32 if code.flags & DESC_B else 0) | (HF_SS32 if stack.flags & DESC_B else 0)
    if not long_mode and not hflags & HF_CS32:
        hflags |= HF_ADDSEG
    return hflags


@cache
def probe_layout() -> ContextLayout:
    """Find the context offsets pvtool relies on with marker values, once per process,
    and fail loudly if Unicorn moved them (pin unicorn==2.1.4)."""
    layout = ContextLayout(HFLAGS, ERROR_CODE, EXCEPTION_IS_INT, OLD_EXCEPTION,
                           SEGMENTS, EFER)
    blob, intno = _ring1_fault_blob()
    int_blob = _software_interrupt_blob()
    code = _segment_from(blob, layout, CS_INDEX)
    checks = (
        intno == 13,
        len(blob) > layout.old_exception + 4,
        _u32(blob, layout.error_code) == _PROBE_SELECTOR,
        _u32(blob, layout.old_exception) == 13,
        _u32(blob, layout.exception_is_int) == 0,
        _u32(int_blob, layout.exception_is_int) == 1,
        _u32(blob, layout.hflags) & 3 == 1,
        code.selector == 0x19 and code.dpl == 1 and code.flags & DESC_B,
        _u64(_efer_blob(), layout.efer) == _PROBE_EFER,
    )
    if not all(checks):
        raise EmulatorLayoutError(
            "Unicorn's CPU context does not have the layout pvtool expects "
            "(install unicorn==2.1.4)")
    return layout


def _ring1_fault_blob() -> tuple[bytes, int]:
    """The context of a #GP(0x1234) raised in ring 1 (CS 0x19, a 32-bit DPL-1 code
    segment), and the vector that arrived."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x10000)
    flat = 0x00CF00000000FFFF
    gdt = b"".join(struct.pack("<Q", flat | access << 40) for access in (0x9B, 0x93, 0xBB, 0xB3))
    uc.mem_write(0x1000, bytes(8) + gdt)
    uc.reg_write(X.UC_X86_REG_GDTR, (0, 0x1000, 8 + len(gdt) - 1, 0))
    uc.reg_write(X.UC_X86_REG_CS, 0x08)
    uc.reg_write(X.UC_X86_REG_SS, 0x10)
    # iretd into ring 1 (CS 0x19, SS 0x21), where mov ax, 0x1234 ; mov ds, ax raises
    # #GP(0x1234): the selector is past the GDT limit.
    uc.mem_write(0x7000, struct.pack("<5I", 0x2000, 0x19, 0x2, 0x9000, 0x21))
    uc.reg_write(X.UC_X86_REG_ESP, 0x7000)
    uc.mem_write(0x3000, b"\xcf")
    uc.mem_write(0x2000, bytes.fromhex("66b83412" "8ed8" "90"))
    seen: dict[str, object] = {}

    def on_fault(uc: Uc, intno: int, _):
        ctx = uc.context_save()
        seen["blob"] = ctypes.string_at(ctx.context.value, ctx.size)
        seen["intno"] = intno
        uc.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_fault)
    emulate(uc, 0x3000, 0x2007, count=4)
    return seen.get("blob", b""), seen.get("intno", -1)


def _software_interrupt_blob() -> bytes:
    """The context inside the INTR hook of an `int 0x33`."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x1000)
    uc.mem_write(0, b"\xcd\x33")
    seen: dict[str, bytes] = {}

    def on_interrupt(uc: Uc, intno: int, _):
        ctx = uc.context_save()
        seen["blob"] = ctypes.string_at(ctx.context.value, ctx.size)
        uc.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_interrupt)
    emulate(uc, 0, 2, count=1)
    return seen.get("blob", b"")


def _efer_blob() -> bytes:
    """The context of a 64-bit CPU after wrmsr(EFER, _PROBE_EFER)."""
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.msr_write(IA32_EFER, _PROBE_EFER)
    ctx = uc.context_save()
    return ctypes.string_at(ctx.context.value, ctx.size)


def _segment_from(blob: bytes, layout: ContextLayout, index: int) -> SegmentCache:
    offset = layout.segments + index * SEGMENT_SIZE
    if len(blob) < offset + SEGMENT_SIZE:
        return SegmentCache(0, 0, 0, 0)
    selector, base, limit, flags = struct.unpack_from("<I4xQII", blob, offset)
    return SegmentCache(selector, base, limit, flags)


def _u32(blob: bytes, offset: int) -> int:
    return struct.unpack_from("<I", blob, offset)[0] if len(blob) >= offset + 4 else -1


def _u64(blob: bytes, offset: int) -> int:
    return struct.unpack_from("<Q", blob, offset)[0] if len(blob) >= offset + 8 else -1
