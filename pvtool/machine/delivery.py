"""Interrupt and exception delivery as the CPU does it (Intel SDM Vol. 3A, 6.12-6.15):
one mechanism, and the rules of each mode plugged into it.

The mechanism is the hardware's sequence: find the gate, check `int n` against the
gate's DPL and the gate's presence, find the handler's code segment and ring, switch
to the inner ring's stack when the ring changes, push the frame ([error code,] EIP, CS,
EFLAGS [, ESP, SS]), clear TF, NT and RF, load CS:EIP; a fault while doing so becomes
the next exception (#DF for the pairs of table 6-5, a triple fault after a failed #DF,
reported with the whole chain). A task gate hands the delivery to the mode's task
switch (machine/taskswitch.py on the bare PC). Every attempt can be traced, one line
each in the form of QEMU's `-d int` log (`pvtool run --trace-int`).

What differs between modes is where the gates, stacks and segments come from and what
the frame shows, and that is a `DeliveryRules` object: the bare PC's IDT, GDT and TSS
(machine/native.py); an unmodified kernel's own tables seen through a hypervisor that
runs its ring 0 in ring 1 (hv/trapmode.py); Xen's trap table and bounce frame
(hv/traps.py).
"""

import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pvtool.machine.cpu import CR2, CS, EAX, SS, Cpu
from pvtool.machine.exits import Exit
from pvtool.machine.interruption import Interruption, Kind
from pvtool.machine.memory import PageFault
from pvtool.x86.descriptors import S_BIT, GateDescriptor, SystemType
from pvtool.x86.registers import EFLAGS_NT, EFLAGS_RF, EFLAGS_TF
from pvtool.x86.tss import TSS32_ESP0
from pvtool.x86.vectors import CONTRIBUTORY, Vector, idt_error_code, vector_name

# The gates an IDT may hold (6.11; 64-bit: 6.14.1).
IDT_GATES = {32: (SystemType.INTERRUPT_GATE, SystemType.TRAP_GATE, SystemType.TASK_GATE),
             64: (SystemType.INTERRUPT_GATE, SystemType.TRAP_GATE)}
GATE_SIZES = {32: 8, 64: 16}  # bytes of an IDT gate, by the CPU's mode
# What each kind of interruption counts as when it reaches the guest's handler.
DELIVERED = {Kind.EXCEPTION: Exit.EXCEPTION, Kind.SOFTWARE: Exit.INTERRUPT,
             Kind.EXTERNAL: Exit.IRQ}


class DeliveryFault(Exception):
    """Delivery itself faulted: the exception to raise instead, and why (for a triple
    fault's message)."""

    def __init__(self, vector: int, error_code: int = 0, why: str = "", *,
                 address: int | None = None):
        super().__init__(vector, error_code, why)
        self.vector = vector
        self.error_code = error_code
        self.why = why
        self.address = address  # for #PF: the linear address CR2 receives


@dataclass(frozen=True)
class Gate:
    """Where a vector leads: a handler at SELECTOR:OFFSET, which `int n` may raise
    from rings up to DPL; an interrupt gate clears IF on entry, a trap gate does not."""

    selector: int
    offset: int
    dpl: int
    present: bool = True
    clears_if: bool = True
    name: str = ""  # what it is, for a hypervisor's messages ("the event callback")
    task: bool = False  # a task gate: SELECTOR names a TSS, OFFSET is unused (6.11)
    ist: int = 0  # a 64-bit gate's interrupt stack table slot (6.14.5); 0: none


@dataclass(frozen=True)
class Frame:
    """What the handler finds on its stack (6.12.1, figure 6-4; 64-bit: 6.14.2)."""

    ip: int
    cs: int
    flags: int
    error_code: int | None = None
    sp: int | None = None  # with ss: pushed on a ring change (always in 64-bit mode)
    ss: int | None = None

    def words(self) -> list[int]:
        """The pushed slots, lowest address first."""
        words = [] if self.error_code is None else [self.error_code]
        words += [self.ip, self.cs, self.flags]
        if self.sp is not None:
            words += [self.sp, self.ss]
        return words

    def push_onto(self, sp: int, bits: int) -> tuple[int, bytes]:
        """(the new stack pointer, the bytes at it). A 64-bit frame starts from a
        16-byte aligned stack (6.14.2)."""
        if bits == 64:
            sp &= ~0xF
        words = self.words()
        slot = bits // 8
        data = struct.pack(f"<{len(words)}{'Q' if bits == 64 else 'I'}",
                           *(w & ((1 << bits) - 1) for w in words))
        return (sp - slot * len(words)) & ((1 << bits) - 1), data


class DeliveryRules(Protocol):
    """What a mode decides; every method may raise DeliveryFault as the CPU would, or
    end the guest in the mode's own way (a hypervisor crashes the domain)."""

    def gate(self, vector: int, software: bool, ip: int) -> Gate:
        """The gate of VECTOR (raised by software or not, returning to IP), or
        DeliveryFault (#GP with the IDT error code)."""

    def ring(self, cpl: int) -> int:
        """The privilege `int n` is checked against at CPL, as the guest sees it."""

    def handler_cs(self, gate: Gate, cpl: int) -> int:
        """The code selector to load from CPL; its RPL is the ring the handler runs in."""

    def kernel_stack(self, ring: int) -> tuple[int, int]:
        """SS and ESP of RING's stack, for a delivery that changes ring."""

    def interrupt_stack(self, ist: int) -> int:
        """RSP from slot IST of the 64-bit TSS's interrupt stack table (only gates
        read from a 64-bit IDT have one)."""

    def shown(self, frame: Frame) -> Frame:
        """The frame as the handler may see it."""

    def write_stack(self, address: int, data: bytes) -> None:
        """Push DATA at ADDRESS of the handler's stack."""

    def on_entry(self, flags: int, gate: Gate) -> int:
        """The handler's EFLAGS, from the interrupted EFLAGS with TF, NT and RF clear;
        a hypervisor also updates its virtual interrupt flag here."""

    def enter(self, ring_change: bool, *, cs: int, eip: int, ss: int, esp: int,
              eflags: int) -> None:
        """Continue in the handler."""

    def set_cr2(self, address: int) -> None:
        """A page fault while delivering: its address, where the handler reads CR2."""

    def switch_task(self, gate: Gate, error_code: int | None, ip: int) -> None:
        """Deliver through a task gate: switch to the task of the TSS GATE.selector,
        the outgoing one to resume at IP (machine/taskswitch.py)."""

    def triple_fault(self, why: str, ip: int, address: int | None) -> None:
        """Delivering a double fault faulted: a PC resets. WHY names the chain;
        ADDRESS is the first page fault's in it."""


@dataclass(slots=True)
class Attempt:
    """One try at delivering a vector: the event, or a fault its delivery raised."""

    vector: int
    error_code: int | None
    software: bool
    ip: int
    length: int = 0  # of the `int n` instruction, for a software interruption
    cr2: int | None = None  # for #PF: the faulting linear address

    def describe(self) -> str:
        """`#GP(0x1230)`, `#PF(0x2, cr2 0x400000)`, `int 0x41`, `vector 32`."""
        if self.software:
            return f"int {self.vector:#x}"
        details = [] if self.error_code is None else [f"{self.error_code:#x}"]
        if self.cr2 is not None:
            details.append(f"cr2 {self.cr2:#x}")
        return vector_name(self.vector) + (f"({', '.join(details)})" if details else "")


class Delivery:
    """The CPU's delivery of interruptions, under one mode's rules. TRACE, when set,
    receives one line per delivery, as QEMU's `-d int` logs them."""

    def __init__(self, cpu: Cpu, rules: DeliveryRules, exits: Counter):
        self.cpu = cpu
        self.rules = rules
        self.exits = exits
        self.trace: Callable[[str], None] | None = None
        self.traced = 0  # lines traced: QEMU numbers its own

    def deliver(self, event: Interruption) -> None:
        """Deliver EVENT to the guest's handler, counted by its kind."""
        self.exits[DELIVERED[event.kind]] += 1
        cr2 = self.cpu.read(CR2) if event.vector == Vector.PF and not event.software else None
        self._deliver(Attempt(event.vector, event.error_code, event.software, event.ip,
                              event.length, cr2), ())

    def _deliver(self, attempt: Attempt, chain: tuple[Attempt, ...], whys: str = "") -> None:
        """A fault while delivering becomes #DF or is delivered itself (table 6-5); a
        fault while delivering #DF is a triple fault, reported with the chain."""
        if self.trace is not None:
            self._trace(attempt)
        chain += (attempt,)
        try:
            self._deliver_once(attempt.vector, attempt.error_code, attempt.software,
                               attempt.ip)
        except DeliveryFault as fault:
            whys = f"{whys}; {fault.why}" if whys else fault.why
            if attempt.vector == Vector.DF:
                chain += (_raised(fault, 0),)
                self.rules.triple_fault(_chain_text(chain, whys), attempt.ip,
                                        next((a.cr2 for a in chain if a.cr2 is not None),
                                             None))
                return
            if fault.vector == Vector.PF:
                self.rules.set_cr2(fault.address)
            if not attempt.software and _is_double_fault(attempt.vector, fault.vector):
                self._deliver(Attempt(Vector.DF, 0, False, attempt.ip),
                              chain + (_raised(fault, attempt.ip),), whys)
                return
            # A refused `int n` did not complete: the fault reports the instruction.
            self._deliver(_raised(fault, attempt.ip - attempt.length), chain, whys)

    def _deliver_once(self, vector: int, error_code: int | None, software: bool,
                      ip: int) -> None:
        rules = self.rules
        gate = rules.gate(vector, software, ip)
        cpl = self.cpu.cpl
        gate_size = GATE_SIZES[64 if self.cpu.long_mode else 32]
        if software and gate.dpl < rules.ring(cpl):
            raise DeliveryFault(Vector.GP, idt_error_code(vector, gate_size),
                                f"int {vector:#x} above its gate's DPL {gate.dpl}")
        if not gate.present:
            raise DeliveryFault(Vector.NP, idt_error_code(vector, gate_size),
                                f"the gate of vector {vector} is not present")
        if gate.task:
            rules.switch_task(gate, error_code, ip)
            return
        self.enter_handler(gate, error_code, ip, cpl)

    def enter_handler(self, gate: Gate, error_code: int | None, ip: int,
                      cpl: int) -> None:
        """Push the frame on the handler's stack and continue in the handler: the part
        of delivery after the gate (a hypervisor's event callback starts here)."""
        rules, cpu, width = self.rules, self.cpu, self.cpu.width
        bits = 64 if cpu.long_mode else 32  # a 64-bit CPU may not have entered it yet
        cs = rules.handler_cs(gate, cpl)
        ring_change = (cs & 3) != cpl
        flags = cpu.read(width.flags)
        frame = Frame(ip, cpu.read(CS), flags, error_code)
        if ring_change or bits == 64:
            frame = Frame(ip, frame.cs, flags, error_code, cpu.read(width.sp), cpu.read(SS))
        ss, sp = rules.kernel_stack(cs & 3) if ring_change \
            else (cpu.read(SS), cpu.read(width.sp))
        if gate.ist:  # QEMU loads a null SS even when the CPL stays (do_interrupt64)
            ss, sp = cs & 3, rules.interrupt_stack(gate.ist)
        sp, data = rules.shown(frame).push_onto(sp, bits)
        rules.write_stack(sp, data)
        eflags = rules.on_entry(flags & ~(EFLAGS_TF | EFLAGS_NT | EFLAGS_RF), gate)
        rules.enter(ring_change, cs=cs, eip=gate.offset, ss=ss, esp=sp, eflags=eflags)

    def enter_callback(self, gate: Gate, ip: int, cpl: int) -> None:
        """Enter a hypervisor's callback (an event upcall) at GATE, returning to IP:
        delivery without a vector."""
        if self.trace is not None:
            self._log(f"{gate.name or 'callback'} cpl={cpl} IP={self._at(CS, ip)} "
                      f"SP={self._at(SS, self.cpu.read(self.cpu.width.sp))}")
        self.enter_handler(gate, None, ip, cpl)

    def _trace(self, attempt: Attempt) -> None:
        """QEMU's `-d int` line (target/i386/tcg/seg_helper.c, do_interrupt_all),
        without its `pc=` (CS's base is not at hand) and with `EAX=` for its
        `env->regs[R_EAX]=`. Like QEMU's, the IP of `int n` is the instruction's."""
        cpu = self.cpu
        ip = attempt.ip - attempt.length
        last = f"CR2={self._hex(attempt.cr2)}" if attempt.cr2 is not None \
            else f"EAX={self._hex(cpu.read(EAX))}"
        self._log(f"v={attempt.vector:02x} e={attempt.error_code or 0:04x} "
                  f"i={int(attempt.software)} cpl={cpu.cpl} IP={self._at(CS, ip)} "
                  f"SP={self._at(SS, cpu.read(cpu.width.sp))} {last}")

    def _log(self, text: str) -> None:
        self.trace(f"{self.traced:6d}: {text}")
        self.traced += 1

    def _at(self, segment: int, offset: int) -> str:
        return f"{self.cpu.read(segment):04x}:{self._hex(offset)}"

    def _hex(self, value: int) -> str:
        return f"{value:0{self.cpu.bits // 4}x}"


def enter_same_ring(cpu: Cpu, *, cs: int, eip: int, esp: int, eflags: int) -> None:
    """Continue at CS:EIP on the current stack segment, as a same-ring delivery does
    (a CS write costs a retranslation: only when it changes)."""
    width = cpu.width
    cpu.write(width.sp, esp)
    cpu.write(width.flags, eflags)
    if cs != cpu.read(CS):
        cpu.write(CS, cs)
    cpu.write(width.ip, eip)


def _is_double_fault(first: int, second: int) -> bool:
    """Table 6-5 (QEMU's check_exception): contributory then contributory, or #PF then
    contributory or #PF, make #DF; any other pair is handled serially."""
    if first in CONTRIBUTORY:
        return second in CONTRIBUTORY
    return first == Vector.PF and (second in CONTRIBUTORY or second == Vector.PF)


def _raised(fault: DeliveryFault, ip: int) -> Attempt:
    return Attempt(fault.vector, fault.error_code, False, ip, cr2=fault.address)


def _chain_text(chain: tuple[Attempt, ...], whys: str) -> str:
    """`#GP(0x1230) -> #NP(0x6a) -> #DF(0x0) -> #NP(0x42) (why...)`."""
    text = " -> ".join(attempt.describe() for attempt in chain)
    return f"{text} ({whys})" if whys else text


def read_idt_gate(read, base: int, limit: int, vector: int, bits: int = 32) -> Gate:
    """VECTOR's gate in the IDT at BASE..BASE+LIMIT, read with READ(address, size) (a
    PageFault becomes #PF). Interrupt and trap gates, and in a 32-bit IDT task gates
    (64-bit mode has no tasks, 6.14.1)."""
    size = GATE_SIZES[bits]
    if vector * size + size - 1 > limit:
        raise DeliveryFault(Vector.GP, idt_error_code(vector, size),
                            f"vector {vector} is past the IDT's limit")
    raw = read_guest(read, base + vector * size, size)
    gate = GateDescriptor.decode(raw)
    if int.from_bytes(raw[:8], "little") & S_BIT or gate.type not in IDT_GATES[bits]:
        raise DeliveryFault(Vector.GP, idt_error_code(vector, size),
                            f"the IDT entry of vector {vector} is not an interrupt, trap "
                            "or task gate")
    return Gate(gate.selector, gate.offset, gate.dpl, gate.present,
                clears_if=gate.type == SystemType.INTERRUPT_GATE,
                task=gate.type == SystemType.TASK_GATE, ist=gate.ist)


def read_tss_stack(read, tss_base: int) -> tuple[int, int]:
    """(SS0, ESP0) of the 32-bit TSS at TSS_BASE (7.2.1), read with READ."""
    esp0, ss0 = struct.unpack("<IH", read_guest(read, tss_base + TSS32_ESP0, 6))
    return ss0, esp0


def read_tss64_stack(read, task: tuple[int, int, int], offset: int) -> int:
    """The stack pointer at OFFSET of the 64-bit TSS TASK (selector, base, limit; 7.7:
    RSPn at 4, ISTn at 0x24), read with READ; past the TSS's limit, #TS with TR's
    selector (QEMU's get_rsp_from_tss64)."""
    selector, tss_base, tss_limit = task
    if offset + 7 > tss_limit:
        raise DeliveryFault(Vector.TS, selector & ~3, f"the 64-bit TSS's limit "
                            f"{tss_limit:#x} ends before its stack pointer at {offset:#x}")
    return struct.unpack("<Q", read_guest(read, tss_base + offset, 8))[0]


def read_guest(read, address: int, size: int) -> bytes:
    """READ(ADDRESS, SIZE), a page fault becoming the #PF delivery raises."""
    try:
        return read(address, size)
    except PageFault as fault:
        raise DeliveryFault(Vector.PF, fault.error_code, f"#PF at {fault.vaddr:#x}",
                            address=fault.vaddr) from None


def write_guest(write, address: int, data: bytes) -> None:
    """WRITE(ADDRESS, DATA), a page fault becoming the #PF delivery raises."""
    try:
        write(address, data)
    except PageFault as fault:
        raise DeliveryFault(Vector.PF, fault.error_code, f"#PF at {fault.vaddr:#x}",
                            address=fault.vaddr) from None
