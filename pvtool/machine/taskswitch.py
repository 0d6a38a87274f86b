"""A hardware task switch through an IDT task gate (Intel SDM Vol. 3A, 7.3, 7.4 and
6.11): the part of task management Unicorn leaves to pvtool.

Unicorn runs QEMU's own task switch for `ljmp` and `lcall` to a TSS descriptor or a
task gate, and for `iret` with EFLAGS.NT set (measured: busy bits, back link, NT and
the saved registers are all right), but it never uses the IDT (UNICORN.md), so an
exception or interrupt whose gate is a task gate is switched here, as the CPU does it
for a call (7.3, table 7-2): check the new TSS (#GP, #NP, #TS with its selector as the
error code), save the outgoing task's dynamic fields in its TSS, write the back link
into the new TSS, set its busy bit and its EFLAGS.NT, set CR0.TS, load TR, CR3 (with
paging on), the LDT, the registers and segments from the new TSS, and push the error
code, if any, on the new task's stack (6.13). The new task's `iret` comes back
through Unicorn's own switch.

Departures: only 32-bit TSSes (a 16-bit TSS raises #GP(selector) here, where the CPU
would switch to it); only tasks whose code runs in ring 0 can be entered (the only
privilege pvtool can raise a running CPU to from a hook, UNICORN.md; another ring
stops the run); the new task's LDT and segments are checked before anything is
saved, so a #TS or #NP they raise is reported in the outgoing task, where the CPU
raises it after the switch, in the new one; the T (debug trap) flag is ignored, as
QEMU ignores it.
"""

from dataclasses import dataclass

from pvtool.machine.cpu import (
    CR0,
    CR3,
    CS,
    DS,
    EAX,
    EBP,
    EBX,
    ECX,
    EDI,
    EDX,
    EFLAGS,
    EIP,
    ES,
    ESI,
    ESP,
    FS,
    GDTR,
    GS,
    LDTR,
    SS,
    TR,
    Cpu,
    SegmentCache,
)
from pvtool.machine.delivery import DeliveryFault, read_guest, write_guest
from pvtool.machine.memory import GuestMemory
from pvtool.x86.descriptors import (
    CODE,
    CONFORMING,
    DESCRIPTOR_SIZE,
    READABLE,
    WRITABLE,
    SegmentDescriptor,
    SystemType,
    gdt_offset,
)
from pvtool.x86.registers import CR0_PG, CR0_TS, EFLAGS_NT
from pvtool.x86.tss import BUSY_BIT, DYNAMIC, LDT, LINK, TSS32_SIZE, TaskState
from pvtool.x86.vectors import Vector

GPRS = (EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI)  # in the TSS's order (x86/tss.py)
SEGMENTS = (ES, CS, SS, DS, FS, GS)
CS_SLOT, SS_SLOT = SEGMENTS.index(CS), SEGMENTS.index(SS)


class RingNotModeled(Exception):
    """The new task runs outside ring 0, which pvtool cannot enter from a hook."""


@dataclass(frozen=True)
class Table:
    """A descriptor table's linear base and limit."""

    base: int
    limit: int
    flags: int = 0  # an LDT's descriptor's high 32 bits, for LDTR's cache


def switch_through_gate(cpu: Cpu, memory: GuestMemory, selector: int,
                        error_code: int | None, return_ip: int) -> None:
    """Switch to the task whose TSS SELECTOR names, as an interrupt through a task
    gate does; the outgoing task resumes at RETURN_IP when the new one irets."""
    gdt = Table(*cpu.descriptor_table(GDTR))
    raw = _new_tss_descriptor(memory, gdt, selector)
    tss = SegmentDescriptor.decode(raw)
    new = TaskState.decode(read_guest(memory.read_virt, tss.base, TSS32_SIZE))
    if new.segments[CS_SLOT] & 3:
        raise RingNotModeled(f"a task gate to TSS {selector:#x}, whose task runs in ring "
                             f"{new.segments[CS_SLOT] & 3}: pvtool enters ring-0 tasks only")
    ldt = _check_new_ldt(memory, gdt, new.ldt)
    caches = _check_new_segments(memory, gdt, ldt, new)
    old_selector, old_base = cpu.task_register()
    _save_outgoing(cpu, memory, old_base, return_ip)
    write_guest(memory.write_virt, tss.base + LINK, old_selector.to_bytes(2, "little"))
    _set_busy(memory, gdt, selector, raw)
    _load_incoming(cpu, selector, raw, tss, new, ldt, caches)
    if error_code is not None:
        _push(cpu, memory, error_code)


def _new_tss_descriptor(memory: GuestMemory, gdt: Table, selector: int) -> bytes:
    """The 8 bytes of an available 32-bit TSS's descriptor (QEMU's switch_tss: #TS
    for an LDT selector, #GP for one past the GDT, a segment that is not an available
    TSS; #NP when absent; #TS when its limit is too small for a TSS)."""
    if selector & 4:
        raise DeliveryFault(Vector.TS, selector & ~3,
                            f"task gate selector {selector:#x} is in the LDT")
    offset = gdt_offset(selector, gdt.limit)
    if offset is None:
        raise DeliveryFault(Vector.GP, selector & ~3,
                            f"task gate selector {selector:#x} is not in the GDT")
    raw = read_guest(memory.read_virt, gdt.base + offset, DESCRIPTOR_SIZE)
    tss = SegmentDescriptor.decode(raw)
    if tss.s or tss.type != SystemType.TSS_AVAILABLE:
        raise DeliveryFault(Vector.GP, selector & ~3,
                            f"selector {selector:#x} is not an available 32-bit TSS")
    if not tss.present:
        raise DeliveryFault(Vector.NP, selector & ~3, f"TSS {selector:#x} is not present")
    if tss.byte_limit < TSS32_SIZE - 1:
        raise DeliveryFault(Vector.TS, selector & ~3,
                            f"TSS {selector:#x} has limit {tss.byte_limit:#x}")
    return raw


def _descriptor(memory: GuestMemory, table: Table, selector: int) -> bytes:
    """SELECTOR's descriptor in TABLE, or #TS(selector) when it is past the limit."""
    offset = selector & ~7
    if offset + DESCRIPTOR_SIZE - 1 > table.limit:
        raise DeliveryFault(Vector.TS, selector & ~3,
                            f"the new task's selector {selector:#x} is past its table")
    return read_guest(memory.read_virt, table.base + offset, DESCRIPTOR_SIZE)


def _check_new_ldt(memory: GuestMemory, gdt: Table, selector: int) -> Table | None:
    """The new task's LDT (None for a null selector): a present LDT descriptor in the
    GDT, or #TS(selector) (7.3, table 7-1)."""
    if selector & ~3 == 0:
        return None
    raw = _descriptor(memory, gdt, selector) if not selector & 4 else None
    ldt = SegmentDescriptor.decode(raw) if raw is not None else None
    if ldt is None or ldt.s or ldt.type != SystemType.LDT or not ldt.present:
        raise DeliveryFault(Vector.TS, selector & ~3,
                            f"the new task's LDT selector {selector:#x} is not an LDT")
    return Table(ldt.base, ldt.byte_limit, _cache_flags(raw))


def _check_new_segments(memory: GuestMemory, gdt: Table, ldt: Table | None,
                        new: TaskState) -> dict[int, SegmentCache]:
    """Table 7-1's checks of the new task's segments (QEMU's tss_load_seg): CS a code
    segment of its RPL, SS writable data of the new CPL, the others readable; a null
    CS or SS is #TS, an absent segment #NP. The caches they load, by slot (the TSS's
    order is QEMU's index order)."""
    cpl = new.segments[CS_SLOT] & 3
    caches = {}
    for slot, selector in enumerate(new.segments):
        if selector & ~3 == 0:
            if slot in (CS_SLOT, SS_SLOT):
                raise DeliveryFault(Vector.TS, 0, "the new task's CS or SS is null")
            caches[slot] = SegmentCache(selector, 0, 0, 0)
            continue
        table = ldt if selector & 4 else gdt
        if table is None:
            raise DeliveryFault(Vector.TS, selector & ~3,
                                f"the new task's selector {selector:#x} needs an LDT")
        segment = SegmentDescriptor.decode(_descriptor(memory, table, selector))
        if not _segment_fits(segment, slot, selector & 3, cpl):
            raise DeliveryFault(Vector.TS, selector & ~3,
                                f"the new task's selector {selector:#x} does not fit")
        if not segment.present:
            raise DeliveryFault(Vector.NP, selector & ~3,
                                f"the new task's segment {selector:#x} is not present")
        caches[slot] = SegmentCache.of(selector, segment)
    return caches


def _segment_fits(segment: SegmentDescriptor, slot: int, rpl: int, cpl: int) -> bool:
    code = bool(segment.type & CODE)
    if not segment.s:
        return False
    if slot == CS_SLOT:
        return code and segment.dpl == rpl
    if slot == SS_SLOT:
        return not code and bool(segment.type & WRITABLE) and segment.dpl == cpl == rpl
    if code and not segment.type & READABLE:
        return False
    conforming = code and bool(segment.type & CONFORMING)
    return conforming or segment.dpl >= max(cpl, rpl)


def _save_outgoing(cpu: Cpu, memory: GuestMemory, tss_base: int, return_ip: int) -> None:
    """The outgoing task's dynamic fields into its TSS (7.3, step 10). A call-like
    switch keeps its busy bit and its NT."""
    state = TaskState(return_ip, cpu.read(EFLAGS), tuple(cpu.read(r) for r in GPRS),
                      tuple(cpu.read(r) for r in SEGMENTS))
    raw = bytearray(read_guest(memory.read_virt, tss_base + DYNAMIC, LDT - DYNAMIC))
    state.save_into(raw)
    write_guest(memory.write_virt, tss_base + DYNAMIC, bytes(raw))


def _set_busy(memory: GuestMemory, gdt: Table, selector: int, raw: bytes) -> None:
    busy = int.from_bytes(raw, "little") | BUSY_BIT
    write_guest(memory.write_virt, gdt.base + (selector & ~7),
                busy.to_bytes(DESCRIPTOR_SIZE, "little"))


def _load_incoming(cpu: Cpu, selector: int, raw: bytes, tss: SegmentDescriptor,
                   new: TaskState, ldt: Table | None, caches: dict[int, SegmentCache]
                   ) -> None:
    """Make the new task current (7.3, steps 11-13): TR (its cache shows the type
    available, as ltr's does), CR0.TS, CR3 with paging on, the LDT, the registers. A
    64-bit CPU (the x86_64 PC before long mode) loads no descriptor on a selector
    write, nor lowers its CPL: its caches are loaded whole (Cpu.load_segment_caches)."""
    cpu.write(CR0, cpu.read(CR0) | CR0_TS)
    cpu.load_segment_cache(TR, selector, tss.base, tss.byte_limit,
                           _cache_flags(raw) & ~(BUSY_BIT >> 32))
    if cpu.read(CR0) & CR0_PG:
        cpu.write(CR3, new.cr3)
    _load_ldt(cpu, new.ldt, ldt)
    for reg, value in zip(GPRS, new.gprs, strict=True):
        cpu.write(reg, value)
    eflags = new.eflags | EFLAGS_NT
    if cpu.bits == 64:
        cpu.write(EFLAGS, eflags)
        cpu.load_segment_caches(caches)
    else:
        _load_selectors(cpu, new, eflags)
    cpu.write(EIP, new.eip)


def _load_selectors(cpu: Cpu, new: TaskState, eflags: int) -> None:
    """A 32-bit CPU's segment writes load the descriptors; ring 0 is entered as
    Cpu.enter_ring0 says."""
    cs, ss = new.segments[CS_SLOT], new.segments[SS_SLOT]
    if cpu.cpl != 0:
        cpu.enter_ring0(cs=cs, ss=ss, esp=new.gprs[GPRS.index(ESP)], eip=new.eip,
                        eflags=eflags)
    else:
        cpu.write(EFLAGS, eflags)
        cpu.write(CS, cs)
        cpu.write(SS, ss)
    for reg, value in zip(SEGMENTS, new.segments, strict=True):
        if reg not in (CS, SS):
            cpu.write(reg, value)


def _load_ldt(cpu: Cpu, selector: int, ldt: Table | None) -> None:
    """LDTR from the new TSS; a null selector leaves it unusable."""
    if ldt is None:
        cpu.load_segment_cache(LDTR, 0, 0, 0, 0)
    else:
        cpu.load_segment_cache(LDTR, selector & ~3, ldt.base, ldt.limit, ldt.flags)


def _cache_flags(raw: bytes) -> int:
    """A descriptor's high 32 bits: the form QEMU keeps in a segment cache's flags."""
    return int.from_bytes(raw[4:8], "little")


def _push(cpu: Cpu, memory: GuestMemory, error_code: int) -> None:
    """The error code goes on the new task's stack (6.13)."""
    esp = (cpu.read(ESP) - 4) & 0xFFFF_FFFF
    write_guest(memory.write_virt, esp, error_code.to_bytes(4, "little"))
    cpu.write(ESP, esp)
