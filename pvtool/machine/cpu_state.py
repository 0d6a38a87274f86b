"""Where Unicorn keeps the CPU: QEMU's CPUX86State, in this process's memory, found
once per CPU and checked byte for byte against the context blob that
machine/context.py reads (the blob is a copy of that structure: uc_context_save is a
memcpy of it, after a 40-byte header).

Why: a hook's calls into Unicorn through ctypes cost about an empty hook apiece (each
releases and takes back the GIL), so a hypercall's one batched read and one write were
three times an empty hook before any of pvtool's own Python ran. Inside a hook QEMU
has every register stored in CPUX86State and reloads them after it, and for the
general-purpose registers, EIP, the segment selectors and CR0-CR4 uc_reg_read does
nothing but load those fields, and for the general-purpose registers uc_reg_write
nothing but store them; doing the same in place costs a Python attribute. Registers
whose write does more (EIP, segment loads, control registers) or whose read does
(EFLAGS) still go through Unicorn (machine/cpu.py).
"""

import contextlib
import ctypes
import os
import random
import struct
from functools import cache

from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
from unicorn import x86_const as X

from pvtool.machine.context import (
    SEGMENT_SIZE,
    SEGMENTS,
    EmulatorLayoutError,
)

BLOB_HEADER = 40  # uc_context's fields before the copy of CPUX86State (UNICORN.md)
# QEMU's register order in CPUX86State.regs[] (R_EAX...R_EDI, then R8...R15),
# 8 bytes a slot in Unicorn's x86-64 build, whatever the mode.
SLOT_ORDER_32 = (X.UC_X86_REG_EAX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX, X.UC_X86_REG_EBX,
                 X.UC_X86_REG_ESP, X.UC_X86_REG_EBP, X.UC_X86_REG_ESI, X.UC_X86_REG_EDI)
SLOT_ORDER_64 = (X.UC_X86_REG_RAX, X.UC_X86_REG_RCX, X.UC_X86_REG_RDX, X.UC_X86_REG_RBX,
                 X.UC_X86_REG_RSP, X.UC_X86_REG_RBP, X.UC_X86_REG_RSI, X.UC_X86_REG_RDI,
                 *(getattr(X, f"UC_X86_REG_R{n}") for n in range(8, 16)))
SLOT_SIZE = 8
# The segment registers in QEMU's order (R_ES...R_GS): their selectors, 16 bits read.
SELECTOR_ORDER = (X.UC_X86_REG_ES, X.UC_X86_REG_CS, X.UC_X86_REG_SS, X.UC_X86_REG_DS,
                  X.UC_X86_REG_FS, X.UC_X86_REG_GS)

# (offset in CPUX86State, struct code) of every register read or written in place.
FIELDS: dict[int, tuple[int, str]] = {
    **{reg: (SLOT_SIZE * slot, "I") for slot, reg in enumerate(SLOT_ORDER_32)},
    **{reg: (SLOT_SIZE * slot, "Q") for slot, reg in enumerate(SLOT_ORDER_64)},
    **{reg: (SEGMENTS - BLOB_HEADER + SEGMENT_SIZE * index, "H")
       for index, reg in enumerate(SELECTOR_ORDER)},
}
# EIP follows regs[] (CPUX86State's target_ulong eip), read in place like them; its
# write goes through Unicorn, which must then leave the translated block (but in a
# fault's hook: Cpu.resume_after_fault). The control
# registers are cr[5], target_ulongs past segs[6] and the ldt, tr, gdt and idt caches:
# uc_reg_read of CR0-CR4 is a plain load of cr[n] (CR2 is read by every #PF, CR3 by
# every guest-virtual access, CR0 and CR4 by every page walk). Their writes are never
# plain stores: CR0, CR3 and CR4 writes recompute QEMU's hidden flags and flush its TLB
# (Unicorn's, or for CR3 QEMU's own cpu_x86_update_cr3: machine/cpu.py).
IP_OFFSET = SLOT_SIZE * len(SLOT_ORDER_64)
CR_OFFSET = SEGMENTS - BLOB_HEADER + SEGMENT_SIZE * (len(SELECTOR_ORDER) + 4)
CONTROL_REGISTERS = (X.UC_X86_REG_CR0, X.UC_X86_REG_CR2, X.UC_X86_REG_CR3, X.UC_X86_REG_CR4)
READABLE: dict[int, tuple[int, str]] = {
    **FIELDS, X.UC_X86_REG_EIP: (IP_OFFSET, "I"), X.UC_X86_REG_RIP: (IP_OFFSET, "Q"),
    **{reg: (CR_OFFSET + 8 * (reg - X.UC_X86_REG_CR0), "Q") for reg in CONTROL_REGISTERS},
}
STATE_SPAN = max(offset + struct.calcsize(code) for offset, code in READABLE.values())

# Where to look: the words of Unicorn's uc_struct (which points at the CPU) and how far
# past each pointer the registers may lie (QEMU's CPUState comes first in X86CPU, with
# its 32 KiB jump cache; measured 0x8a50 in 2.1.4).
UC_STRUCT_WORDS = 256
WINDOW = 64 << 10


def find_cpu_state(uc: Uc) -> int:
    """The address of UC's CPUX86State. The general-purpose registers get marker
    values (and their own back afterwards); the structure is looked for past each
    pointer the uc_struct holds, through /proc/self/mem (a pointer that is not one
    reads as an error, never a crash), and the first place found must equal the
    context blob's copy of it, or Unicorn is not the one pvtool was written against."""
    saved = uc.context_save()  # every register, whole, whatever the mode
    marks = [random.getrandbits(32) | 1 for _ in SLOT_ORDER_32]
    try:
        for reg, mark in zip(SLOT_ORDER_32, marks, strict=True):
            uc.reg_write(reg, mark)
        address = _search(uc._uch.value, marks)
        if address is None or not _matches_blob(uc, address) or not control_registers_found():
            raise EmulatorLayoutError(
                "Unicorn's CPU state is not where pvtool expects it "
                "(install unicorn==2.1.4)")
        return address
    finally:
        uc.context_restore(saved)


_last_found: list[tuple[int, int]] = []  # (uc_struct word, offset past its pointer)


def _search(handle: int, marks: list[int]) -> int | None:
    """The first place past a uc_struct pointer whose slots hold MARKS; where the
    last search found it first (the layout is the same for every Uc of a build)."""
    with open("/proc/self/mem", "rb", buffering=0) as mem:
        pointers = struct.unpack(f"<{UC_STRUCT_WORDS}Q",
                                 _read(mem, handle, UC_STRUCT_WORDS * 8).ljust(
                                     UC_STRUCT_WORDS * 8, b"\0"))
        for word, offset in _last_found:
            if _slots_hold(_read(mem, pointers[word] + offset, SLOT_SIZE * len(marks)),
                           0, marks):
                return pointers[word] + offset
        first = struct.pack("<I", marks[0])
        for word, pointer in enumerate(pointers):
            window = _read(mem, pointer, WINDOW) if pointer else b""
            at = window.find(first)
            while at >= 0:
                if at % SLOT_SIZE == 0 and _slots_hold(window, at, marks):
                    _last_found[:] = [(word, at)]
                    return pointer + at
                at = window.find(first, at + 1)
    return None


def _read(mem, address: int, size: int) -> bytes:
    """SIZE bytes at ADDRESS of this process, or fewer (none) where they end."""
    with contextlib.suppress(OSError, OverflowError, ValueError):
        return os.pread(mem.fileno(), size, address)
    return b""


def _slots_hold(window: bytes, at: int, marks: list[int]) -> bool:
    """Whether the slots from AT hold MARKS in their low 32 bits."""
    if at + SLOT_SIZE * len(marks) > len(window):
        return False
    lows = struct.unpack_from("<" + "I4x" * len(marks), window, at)
    return list(lows) == marks


def _matches_blob(uc: Uc, address: int) -> bool:
    """Whether the state at ADDRESS is what uc_context_save copies (its first
    STATE_SPAN bytes and past them, up to the blob's end)."""
    context = uc.context_save()
    blob = ctypes.string_at(context.context.value, context.size)
    live = ctypes.string_at(address, len(blob) - BLOB_HEADER)
    return len(blob) > BLOB_HEADER + STATE_SPAN and blob[BLOB_HEADER:] == live


@cache
def control_registers_found() -> bool:
    """Whether the control registers lie where READABLE says, once per process: a
    scratch CPU gets a marker value in each (CR0 and CR4 with bits QEMU keeps as
    written, CR2 and CR3 random), and its context blob must hold what uc_reg_read
    gives at each register's offset, all four distinct."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    marks = {X.UC_X86_REG_CR0: 0x6000_0011,  # CD, NW, ET, PE: caches off, no paging
             X.UC_X86_REG_CR2: random.getrandbits(32) | 1,
             X.UC_X86_REG_CR3: random.getrandbits(20) << 12 | 0x1000,
             X.UC_X86_REG_CR4: 0x2B0}  # PSE, PAE, PGE, OSFXSR
    for reg, mark in marks.items():
        uc.reg_write(reg, mark)
    context = uc.context_save()
    blob = ctypes.string_at(context.context.value, context.size)
    read = [uc.reg_read(reg) for reg in marks]
    in_blob = [struct.unpack_from("<Q", blob, BLOB_HEADER + READABLE[reg][0])[0]
               for reg in marks]
    return read == in_blob and len(set(read)) == len(read) and 0 not in read
