"""Unicorn's x86-32 CPU, with the workarounds pvtool needs (shared/UNICORN.md).

Everything that reaches into Unicorn's internals lives here and nowhere else:
register access through the raw C API (four times cheaper than the binding), the CPU
context blob (CPL from hflags, the fault error code, and the reset of QEMU's
`old_exception` that Unicorn forgets after a hooked fault), and the one-instruction
trampolines that change privilege, since `reg_write` cannot lower it.
"""

import ctypes
import struct
from dataclasses import dataclass
from functools import cache

from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, Uc
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from pvtool.errors import PvtoolError
from pvtool.interrupts import emulate
from pvtool.x86.registers import CR0_PE

# Register ids, exported under plain names so callers need not import unicorn.
EAX, EBX, ECX, EDX = X.UC_X86_REG_EAX, X.UC_X86_REG_EBX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX
ESI, EDI, EBP, ESP = X.UC_X86_REG_ESI, X.UC_X86_REG_EDI, X.UC_X86_REG_EBP, X.UC_X86_REG_ESP
EIP, EFLAGS = X.UC_X86_REG_EIP, X.UC_X86_REG_EFLAGS
CS, DS, ES, FS, GS, SS = (X.UC_X86_REG_CS, X.UC_X86_REG_DS, X.UC_X86_REG_ES,
                          X.UC_X86_REG_FS, X.UC_X86_REG_GS, X.UC_X86_REG_SS)
CR0, CR2, CR3, CR4 = X.UC_X86_REG_CR0, X.UC_X86_REG_CR2, X.UC_X86_REG_CR3, X.UC_X86_REG_CR4
GDTR, IDTR, TR = X.UC_X86_REG_GDTR, X.UC_X86_REG_IDTR, X.UC_X86_REG_TR
LDTR = X.UC_X86_REG_LDTR
RIP, RSP, RFLAGS = X.UC_X86_REG_RIP, X.UC_X86_REG_RSP, X.UC_X86_REG_RFLAGS

GPRS_BY_NAME = {"eax": EAX, "ebx": EBX, "ecx": ECX, "edx": EDX,
                "esi": ESI, "edi": EDI, "ebp": EBP, "esp": ESP}
GPRS64_BY_NAME = {name: getattr(X, f"UC_X86_REG_{name.upper()}") for name in (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")}


@dataclass(frozen=True)
class Width:
    """The registers whose name depends on the CPU's width, and their mask."""

    bits: int
    ip: int
    sp: int
    flags: int
    gprs: dict[str, int]  # by the name capstone gives them

    @property
    def mask(self) -> int:
        return (1 << self.bits) - 1


WIDTHS = {32: Width(32, EIP, ESP, EFLAGS, GPRS_BY_NAME),
          64: Width(64, RIP, RSP, RFLAGS, GPRS64_BY_NAME)}


_CONTEXT_HFLAGS = 216  # offsets in unicorn 2.1.4's uc_context (checked by probe_layout)
_CONTEXT_ERROR_CODE = 5424
_CONTEXT_OLD_EXCEPTION = 5536
_PROBE_SELECTOR = 0x1234  # a selector past the GDT limit: #GP with this error code


class EmulatorLayoutError(PvtoolError):
    """Unicorn's internal CPU layout is not the one pvtool was written against."""

    exit_status = 70


@dataclass(frozen=True)
class ContextLayout:
    hflags: int
    error_code: int
    old_exception: int


class Cpu:
    """One emulated x86 CPU of BITS (32 or 64): fast registers, CPL, fault
    acknowledgement, TLB flush."""

    def __init__(self, uc: Uc, bits: int = 32):
        self.uc = uc
        self.width = WIDTHS[bits]
        self._mask = self.width.mask
        self._handle = uc._uch
        self._value = ctypes.c_uint64()
        self._value_ref = ctypes.byref(self._value)
        self._context = uc.context_save()  # reused: saving into it costs ~1 us
        self._layout = probe_layout()

    @property
    def bits(self) -> int:
        return self.width.bits

    @property
    def ip(self) -> int:
        """EIP, or RIP on a 64-bit CPU."""
        return self.read(self.width.ip)

    def read(self, reg: int) -> int:
        self._value.value = 0  # segment registers fill only 16 bits of the buffer
        uclib.uc_reg_read(self._handle, reg, self._value_ref)
        return self._value.value & self._mask

    def write(self, reg: int, value: int) -> None:
        self._value.value = value & self._mask
        uclib.uc_reg_write(self._handle, reg, self._value_ref)

    def flush_tlb(self) -> None:
        """Drop every cached translation: Unicorn flushes its TLB on a CR3 write,
        even of the same value (UNICORN.md), and on nothing a hook can do otherwise."""
        self.write(CR3, self.read(CR3))

    def save_context(self, into=None):
        """The whole CPU state (registers, segment caches, control registers), into
        INTO (a context this method returned before) or a new one: a hypervisor
        time-slicing several virtual CPUs on this one keeps each in its own."""
        if into is None:
            return self.uc.context_save()
        self.uc.context_update(into)
        return into

    def restore_context(self, context) -> None:
        """Put back a state save_context took; the next slice runs it."""
        self.uc.context_restore(context)

    def _blob(self) -> int:
        self.uc.context_update(self._context)
        return self._context.context.value

    @property
    def cpl(self) -> int:
        """The current privilege level, from hflags: `CS & 3` is not reliable."""
        return ctypes.c_uint32.from_address(self._blob() + self._layout.hflags).value & 3

    def fault_error_code(self) -> int:
        return ctypes.c_int32.from_address(self._blob() + self._layout.error_code).value & 0xFFFF

    def ack_exception(self) -> None:
        """Tell QEMU the fault was handled: Unicorn never resets `old_exception`, so the
        next fault would arrive as a double fault and the one after end the run."""
        base = self._blob()
        ctypes.c_int32.from_address(base + self._layout.old_exception).value = -1
        self.uc.context_restore(self._context)

    def enter_ring0(self, *, cs: int, ss: int, esp: int, eip: int, eflags: int) -> None:
        """Continue at CS:EIP in ring 0 on SS:ESP. reg_write cannot lower CPL, but a
        segment load in real mode leaves a DPL-0 SS cache: clear PE, load SS, set PE
        again, then load the ring-0 selectors (UNICORN.md; works with paging on).
        Writing EIP last makes Unicorn retranslate with the new privilege."""
        cr0 = self.read(CR0)
        self.write(CR0, cr0 & ~CR0_PE)
        self.write(SS, 0)
        self.write(CR0, cr0)
        self.write(CS, cs)
        self.write(SS, ss)
        self.write(ESP, esp)
        self.write(EFLAGS, eflags)
        self.write(EIP, eip)

    def task_register(self) -> tuple[int, int]:
        """(selector, base) of TR."""
        selector, base, _, _ = self.uc.reg_read(TR)
        return selector, base

    def load_segment_cache(self, reg: int, selector: int, base: int, limit: int,
                           flags: int) -> None:
        """Load TR or LDTR as a task switch does, its checks already made: FLAGS are
        the descriptor's high 32 bits, the form QEMU's segment caches keep."""
        self.uc.reg_write(reg, (selector, base, limit, flags))

    def descriptor_table(self, reg: int) -> tuple[int, int]:
        """(base, limit) of GDTR or IDTR."""
        _, base, limit, _ = self.uc.reg_read(reg)
        return base, limit

    def set_descriptor_table(self, reg: int, base: int, limit: int) -> None:
        self.uc.reg_write(reg, (0, base, limit, 0))


@cache
def probe_layout() -> ContextLayout:
    """Find the context offsets pvtool relies on with marker values, once per process,
    and fail loudly if Unicorn moved them (pin unicorn==2.1.4)."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x10000)
    flat = 0x00CF00000000FFFF
    gdt = b"".join(struct.pack("<Q", flat | access << 40) for access in (0x9B, 0x93, 0xBB, 0xB3))
    uc.mem_write(0x1000, bytes(8) + gdt)
    uc.reg_write(GDTR, (0, 0x1000, 8 + len(gdt) - 1, 0))
    uc.reg_write(CS, 0x08)
    uc.reg_write(SS, 0x10)
    # iretd into ring 1 (CS 0x19, SS 0x21), where mov ax, 0x1234 ; mov ds, ax raises
    # #GP(0x1234): the selector is past the GDT limit.
    uc.mem_write(0x7000, struct.pack("<5I", 0x2000, 0x19, 0x2, 0x9000, 0x21))
    uc.reg_write(ESP, 0x7000)
    uc.mem_write(0x3000, b"\xcf")
    uc.mem_write(0x2000, bytes.fromhex("66b83412" "8ed8" "90"))
    seen: dict[str, bytes] = {}

    def on_fault(uc: Uc, intno: int, _):
        ctx = uc.context_save()
        seen["blob"] = ctypes.string_at(ctx.context.value, ctx.size)
        seen["intno"] = bytes([intno])
        uc.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_fault)
    emulate(uc, 0x3000, 0x2007, count=4)
    blob = seen.get("blob", b"")
    layout = ContextLayout(_CONTEXT_HFLAGS, _CONTEXT_ERROR_CODE, _CONTEXT_OLD_EXCEPTION)
    checks = (
        seen.get("intno") == b"\x0d",
        len(blob) > layout.old_exception + 4,
        _u32(blob, layout.error_code) == _PROBE_SELECTOR,
        _u32(blob, layout.old_exception) == 13,
        _u32(blob, layout.hflags) & 3 == 1,
    )
    if not all(checks):
        raise EmulatorLayoutError(
            "Unicorn's CPU context does not have the layout pvtool expects "
            "(install unicorn==2.1.4)")
    return layout


def _u32(blob: bytes, offset: int) -> int:
    return struct.unpack_from("<I", blob, offset)[0] if len(blob) >= offset + 4 else -1
