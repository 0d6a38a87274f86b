"""Unicorn's x86-32 CPU, with the workarounds pvtool needs (shared/UNICORN.md).

Everything that reaches into Unicorn's internals lives here and nowhere else:
register access through the raw C API (four times cheaper than the binding), the CPU
context blob (CPL from hflags, the fault error code, and the reset of QEMU's
`old_exception` that Unicorn forgets after a hooked fault), and the one-instruction
trampolines that change privilege, since `reg_write` cannot lower it.
"""

import ctypes
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from operator import itemgetter

from unicorn import Uc
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from pvtool.machine.context import (
    CS_INDEX,
    DS_INDEX,
    ES_INDEX,
    FS_INDEX,
    GS_INDEX,
    HF_LMA,
    HF_PE,
    SS_INDEX,
    EmulatorLayoutError,
    SegmentCache,
    hflags_for,
    probe_layout,
    read_segment,
    write_segment,
)
from pvtool.machine.cpu_state import (
    BLOB_HEADER,
    FIELDS,
    READABLE,
    STATE_SPAN,
    find_cpu_state,
)
from pvtool.machine.qemu_functions import QemuFunctions, check_functions
from pvtool.x86.msrs import EFER_LMA
from pvtool.x86.registers import CR0_PE

__all__ = ["Cpu", "EmulatorLayoutError", "SegmentCache", "probe_layout"]

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
RAX, RCX, RDX, R11 = X.UC_X86_REG_RAX, X.UC_X86_REG_RCX, X.UC_X86_REG_RDX, X.UC_X86_REG_R11
FS_BASE, GS_BASE = X.UC_X86_REG_FS_BASE, X.UC_X86_REG_GS_BASE

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


CELL_TYPES = {"H": ctypes.c_uint16, "I": ctypes.c_uint32, "Q": ctypes.c_uint64}

# The C API's register calls as plain function pointers over integers: the binding's
# own prototypes convert every argument on each call, which costs a fifth of a read.
_REG_ACCESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)
_reg_read = _REG_ACCESS(ctypes.cast(uclib.uc_reg_read, ctypes.c_void_p).value)
_reg_write = _REG_ACCESS(ctypes.cast(uclib.uc_reg_write, ctypes.c_void_p).value)


class Cpu:
    """One emulated x86 CPU of BITS (32 or 64): fast registers, CPL, fault
    acknowledgement, TLB flush."""

    def __init__(self, uc: Uc, bits: int = 32):
        self.uc = uc
        self.width = WIDTHS[bits]
        self._mask = self.width.mask
        self._handle = uc._uch.value
        self._value = ctypes.c_uint64()
        self._value_address = ctypes.addressof(self._value)
        self._context = uc.context_save()  # reused: saving into it costs ~1 us
        self._layout = probe_layout()
        check_functions()

    @property
    def bits(self) -> int:
        return self.width.bits

    @property
    def ip(self) -> int:
        """EIP, or RIP on a 64-bit CPU."""
        return self._ip_cell.value

    def read(self, reg: int) -> int:
        """REG: in place where Unicorn's read is a plain load (cpu_state.py), else
        through Unicorn."""
        cell = self._readable.get(reg)
        if cell is not None:
            return cell.value & self._mask
        self._value.value = 0  # segment registers fill only 16 bits of the buffer
        _reg_read(self._handle, reg, self._value_address)
        return self._value.value & self._mask

    def write(self, reg: int, value: int) -> None:
        """REG = VALUE: in place for a general-purpose register (Unicorn's write is a
        plain store there), CR3 through QEMU's own cpu_x86_update_cr3 (all that
        Unicorn's write of it does, without the dispatch: machine/qemu_functions.py),
        else through Unicorn (EIP, segments, the other control registers)."""
        cell = self._writable.get(reg)
        if cell is not None:
            cell.value = value & self._mask
            return
        if reg == CR3:
            self.qemu.write_cr3(value & self._mask)
            return
        self._value.value = value & self._mask
        _reg_write(self._handle, reg, self._value_address)

    @cached_property
    def _readable(self) -> dict[int, ctypes._SimpleCData]:
        """A ctypes cell over each register read in place, by register id."""
        return self._cells(READABLE)

    @cached_property
    def _writable(self) -> dict[int, ctypes._SimpleCData]:
        return {reg: cell for reg, cell in self._cells(FIELDS).items()
                if FIELDS[reg][1] != "H"}

    @cached_property
    def _ip_cell(self) -> ctypes._SimpleCData:
        return self._readable[self.width.ip]

    def _cells(self, fields: dict[int, tuple[int, str]]) -> dict[int, ctypes._SimpleCData]:
        base = ctypes.addressof(self._state)
        return {reg: CELL_TYPES[code].from_address(base + offset)
                for reg, (offset, code) in fields.items()}

    def reader(self, regs: tuple[int, ...]) -> Callable[[], tuple[int, ...]]:
        """A function giving REGS (general-purpose, control registers, selectors) in
        one unpack of the CPU's state in place, with no call into Unicorn
        (cpu_state.py). Only inside a hook or between slices, as every register access."""
        return register_reader(self._state, regs)

    def writer(self, reg: int) -> Callable[[int], None]:
        """A function that writes general-purpose register REG in place (its width's
        low bits, as uc_reg_write does): a hypercall's result costs no call into
        Unicorn. Only inside a hook or between slices, as every register access."""
        offset, code = FIELDS[reg]
        if code == "H":
            raise ValueError("a segment register is loaded through Unicorn: use write")
        return partial(setattr, self._writable[reg], "value")

    @cached_property
    def _state(self) -> ctypes.Array:
        """QEMU's CPUX86State of this CPU, as bytes in place (found when first asked)."""
        return (ctypes.c_char * STATE_SPAN).from_address(find_cpu_state(self.uc))

    def write_msr(self, msr: int, value: int) -> None:
        self.uc.msr_write(msr, value)

    @cached_property
    def qemu(self) -> QemuFunctions:
        """QEMU's own functions, bound to this CPU (machine/qemu_functions.py)."""
        return QemuFunctions(self.uc, ctypes.addressof(self._state))

    def flush_tlb(self) -> None:
        """Drop every cached translation and the jump cache (QEMU's tlb_flush)."""
        self.qemu.flush_tlb()

    def flush_tlb_page(self, address: int) -> None:
        """Drop the cached translations of the page holding linear ADDRESS: after it,
        no access to that page uses a translation made before it (other pages' may
        stay cached). What a guest's invlpg promises, done by QEMU's tlb_flush_page
        (the whole mmu index where a cached large page covers the page)."""
        self._flush_tlb_page(address)

    @cached_property
    def _flush_tlb_page(self) -> Callable[[int], None]:
        """QEMU's tlb_flush_page bound to this CPU: a kernel's invlpg, every time."""
        return self.qemu.bound_flush_tlb_page()

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

    @cached_property
    def _fields(self) -> tuple[ctypes.c_uint32, ctypes.c_int32, ctypes.c_int32,
                               ctypes.c_int32]:
        """hflags, error_code, exception_is_int and old_exception in the CPU's state in
        place: the context blob is a copy of that state (cpu_state.py), so what the
        blob's offsets name there is the live field, read or written without the
        ~1 us save (and restore) of the whole context."""
        state = ctypes.addressof(self._state) - BLOB_HEADER  # the blob's offsets apply
        return (ctypes.c_uint32.from_address(state + self._layout.hflags),
                ctypes.c_int32.from_address(state + self._layout.error_code),
                ctypes.c_int32.from_address(state + self._layout.exception_is_int),
                ctypes.c_int32.from_address(state + self._layout.old_exception))

    @property
    def cpl(self) -> int:
        """The current privilege level, from hflags: `CS & 3` is not reliable."""
        return self._fields[0].value & 3

    @property
    def long_mode(self) -> bool:
        """Whether the CPU runs in IA-32e mode (EFER.LMA): a 64-bit CPU starts a
        Multiboot kernel in protected mode, and the kernel turns long mode on."""
        return self.bits == 64 and bool(self._fields[0].value & HF_LMA)

    @property
    def hflags(self) -> int:
        """QEMU's hidden flags (machine/context.py names the bits)."""
        return self._fields[0].value

    def segment(self, index: int) -> SegmentCache:
        """The cache of segment register INDEX (context.CS_INDEX...)."""
        return read_segment(self._blob(), self._layout, index)

    def load_segments(self, code: SegmentCache, stack: SegmentCache, *,
                      data: SegmentCache | None = None, efer: int | None = None) -> None:
        """Load CS and SS (and DS, ES, FS and GS with DATA) as a far transfer does,
        their checks already made: the CPL becomes SS's DPL, and the code and stack
        sizes follow the caches, in long mode (EFER.LMA, replaced by EFER if given)
        or not. The only way to lower the CPL of a 64-bit CPU or to leave the long
        mode Unicorn starts it in (UNICORN.md); a hook must write RIP afterwards so
        that Unicorn translates again."""
        caches = {CS_INDEX: code, SS_INDEX: stack}
        if data is not None:
            caches |= dict.fromkeys((DS_INDEX, ES_INDEX, FS_INDEX, GS_INDEX), data)
        self.load_segment_caches(caches, efer=efer)

    def load_segment_caches(self, caches: dict[int, SegmentCache], *,
                            efer: int | None = None) -> None:
        """load_segments for any of the six registers, by QEMU's index (ES_INDEX...)."""
        blob, layout = self._blob(), self._layout
        efer_field = ctypes.c_uint64.from_address(blob + layout.efer)
        if efer is not None:
            efer_field.value = efer
        for index, cache in caches.items():
            write_segment(blob, layout, index, cache)
        hflags = ctypes.c_uint32.from_address(blob + layout.hflags)
        hflags.value = hflags_for(hflags.value, read_segment(blob, layout, CS_INDEX),
                                  read_segment(blob, layout, SS_INDEX),
                                  cr0_pe=bool(hflags.value & HF_PE),
                                  long_mode=bool(efer_field.value & EFER_LMA))
        self.uc.context_restore(self._context)

    def fault_error_code(self) -> int:
        return self._fields[1].value & 0xFFFF

    def ack_exception(self) -> int:
        """Tell QEMU the fault was handled: Unicorn never resets `old_exception`, so the
        next fault would arrive as a double fault and the one after end the run.
        Returns the fault's error code (fault_error_code). Both in place: on the path
        of every writable-page-table store, this costs two field accesses."""
        _, error_code, _, old_exception = self._fields
        old_exception.value = -1
        return error_code.value & 0xFFFF

    def resume_after_fault(self, ip: int) -> None:
        """EIP (RIP) = IP, stored in place, from the INTR hook of a fault (#PF, #GP).
        Enough there: QEMU has left the translated block to raise the exception, and
        after the hook it looks up the next block at env->eip, so the store is all a
        move needs; uc_reg_write would also end the run loop's turn (quit_request) for
        nothing, 0.3-0.5 us. Not enough, so not for: a hook that changes CPL or mode
        (the rest of the block would run with the old flags: write EIP through Unicorn,
        UNICORN.md), nor an instruction hook (syscall, sysenter, in/out), after which
        Unicorn goes on inside the block or adds the instruction's length to RIP.
        The whole target_ulong is stored, as uc_reg_write of EIP does."""
        self._whole_ip_cell.value = ip & self._mask

    @cached_property
    def _whole_ip_cell(self) -> ctypes._SimpleCData:
        return self._readable[RIP]

    @property
    def raised_by_instruction(self) -> bool:
        """Inside the INTR hook: whether `int n`, int3 or into raised the vector (EIP
        after the instruction), not a fault (EIP on it). QEMU records which, for the
        return address it pushes, and no byte of the guest need be read to tell."""
        return bool(self._fields[2].value)

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

    def task_segment(self) -> tuple[int, int, int]:
        """(selector, base, limit) of TR."""
        selector, base, limit, _ = self.uc.reg_read(TR)
        return selector, base, limit

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


def register_reader(state: ctypes.Array, regs: tuple[int, ...]) -> Callable[[], tuple[int, ...]]:
    """A function giving REGS, in that order, in one unpack of STATE (the CPU's state
    in place): a hypercall's CS, number and arguments cost one call."""
    if len(set(regs)) != len(regs):
        raise ValueError("a register is named twice")
    fields = [READABLE[reg] for reg in regs]  # KeyError: not readable in place
    in_memory = sorted(range(len(regs)), key=lambda i: fields[i][0])
    layout, at = "<", 0
    for i in in_memory:
        offset, code = fields[i]
        layout += f"{offset - at}x{code}"
        at = offset + struct.calcsize(code)
    unpack = partial(struct.Struct(layout).unpack_from, state)
    if in_memory == sorted(in_memory):
        return unpack
    order = itemgetter(*(in_memory.index(i) for i in range(len(regs))))  # two at least
    return lambda: order(unpack())
