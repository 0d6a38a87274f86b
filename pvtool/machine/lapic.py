"""The local APIC of the PC's one CPU (MMIO page at 0xFEE00000), as QEMU 7.2 models it
(hw/intc/apic.c), with the state SeaBIOS leaves it in.

Layout and meaning are the Intel SDM's (vol. 3A, chapter "Advanced Programmable
Interrupt Controller (APIC)"): each register a 32-bit word at a 16-byte-aligned offset.
Where QEMU differs from the SDM, QEMU is followed, measured with guests/apicprobe:
- Every LVT entry stores all 32 bits written; ICR high too. TPR keeps 8 bits, LDR its
  top byte, DFR its model nibble (the rest reads as ones), SVR bits 0-8, the divide
  configuration bits 0, 1 and 3.
- ESR records only an access to a register that does not exist (bit 7); writing ESR
  changes nothing (the SDM's write-then-read latch is not QEMU's).
- Accesses narrower than 32 bits read 0 and write nothing.
- The current count moves when virtual time does, between the run loop's slices: two
  reads close together may show the same value (QEMU's moves every nanosecond).
- The ICR's delivery status bit reads as written: QEMU delivers at once.
- After SeaBIOS: software-enabled (SVR 0x1FF), LINT0 ExtINT and LINT1 NMI, both with
  the level bit set, ICR low 0xC4610 (the SIPI it broadcast to find other CPUs).

The timer counts the APIC bus clock: QEMU counts nanoseconds of its virtual clock
(1 GHz) shifted right by the divide configuration (`count_shift`); a one-shot fires
initial count + 1 ticks after the count was written, a periodic timer every initial
count + 1 ticks, and the current count is computed from the same tick numbers.

Interrupts reach the CPU (`pending`, `acknowledge`) from the IRR by priority (the
vector's class above the PPR), or from the 8259 pair through LINT0 in ExtINT mode
(virtual wire), which QEMU lets go first. The I/O APIC delivers with `accept`; EOI of a
level-triggered vector is broadcast back to it.

Departures:
- LINT0 passes the 8259's INTR only in ExtINT mode: its fixed and NMI modes are not
  wired to the 8259 output. Nothing drives LINT1 but `lint1_nmi` (QEMU's NMI button).
- INIT, SIPI and SMI IPIs are dropped whatever their destination (there is no other
  CPU, and an INIT to self, which would reset the CPU on QEMU, is ignored too).
- Thermal, performance-counter and error LVT entries never fire. The APIC base MSR
  (0x1B) is Unicorn's: it reads 0 (QEMU's reads 0xFEE00900), and the APIC cannot be
  moved or disabled through it (Unicorn 2.1.4's binding hooks no rdmsr).
- A write to the page's first 16 bytes (QEMU's MSI doorbell) is ignored.
"""

from collections.abc import Callable

APIC_BASE = 0xFEE00000
APIC_SIZE = 0x1000
APIC_BUS_HZ = 1_000_000_000  # QEMU's timer counts nanoseconds (QEMU_CLOCK_VIRTUAL)

# Register offsets, SDM table "Local APIC Register Address Map".
ID, VERSION, TPR, APR, PPR, EOI = 0x20, 0x30, 0x80, 0x90, 0xA0, 0xB0
LDR, DFR, SVR = 0xD0, 0xE0, 0xF0
ISR_BASE, TMR_BASE, IRR_BASE, ESR = 0x100, 0x180, 0x200, 0x280
ICR_LOW, ICR_HIGH = 0x300, 0x310
LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR = (
    0x320, 0x330, 0x340, 0x350, 0x360, 0x370)
TIMER_INITIAL, TIMER_CURRENT, TIMER_DIVIDE = 0x380, 0x390, 0x3E0
LVT_OFFSETS = (LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR)

VERSION_VALUE = 0x14 | (len(LVT_OFFSETS) - 1) << 16  # xAPIC, max LVT entry 5
LVT_MASKED = 0x10000
LVT_LEVEL = 0x8000
LVT_PERIODIC = 0x20000
SVR_ENABLE = 0x100
SVR_BITS = 0x1FF
ESR_ILLEGAL_REGISTER = 0x80
ICR_SHORTHAND_SHIFT = 18
LOGICAL_DESTINATION = 0x800
BROADCAST_ID = 0xFF
FLAT_MODEL = 0xF

# Delivery modes (ICR, LVT, I/O APIC redirection entries: bits 8-10).
FIXED, LOWEST_PRIORITY, SMI, NMI, INIT, STARTUP, EXTINT = 0, 1, 2, 4, 5, 6, 7
SELF, ALL, ALL_BUT_SELF = 1, 2, 3  # ICR destination shorthands

# What SeaBIOS leaves behind (measured with guests/apicprobe on QEMU 7.2).
SEABIOS_SVR = 0x1FF
SEABIOS_LINT0 = LVT_LEVEL | EXTINT << 8
SEABIOS_LINT1 = LVT_LEVEL | NMI << 8
SEABIOS_ICR_LOW = 0xC4610


def delivery_mode(entry: int) -> int:
    return (entry >> 8) & 7


class VectorSet:
    """256 bits (IRR, ISR or TMR): read as eight 32-bit registers."""

    def __init__(self):
        self.bits = 0

    def add(self, vector: int) -> None:
        self.bits |= 1 << vector

    def discard(self, vector: int) -> None:
        self.bits &= ~(1 << vector)

    def __contains__(self, vector: int) -> bool:
        return bool(self.bits >> vector & 1)

    def highest(self) -> int | None:
        return self.bits.bit_length() - 1 if self.bits else None

    def word(self, index: int) -> int:
        return (self.bits >> (32 * index)) & 0xFFFFFFFF


class LocalApic:
    """The APIC page (`read`/`write` at offsets in it), the timer (a TimedDevice on
    APIC_BUS_HZ), and the CPU's interrupt inputs (`pending`, `acknowledge`, `nmi`).

    PIC is the 8259 pair behind LINT0; EOI_BROADCAST(vector) tells the I/O APIC a
    level-triggered vector was EOIed; RAISE_NMI is the CPU's NMI pin; SIGNAL is called
    whenever the CPU's INTR may just have risen, so the run loop looks at once."""

    def __init__(self, pic, *, eoi_broadcast: Callable[[int], None] = lambda v: None,
                 raise_nmi: Callable[[], None] = lambda: None,
                 signal: Callable[[], None] = lambda: None):
        self.pic = pic
        self.eoi_broadcast = eoi_broadcast
        self.raise_nmi = raise_nmi
        self.signal = signal
        self._writers = self._register_writers()
        self.now = 0  # APIC bus ticks since power-on
        self.reset()

    def reset(self) -> None:
        """Power-on state as SeaBIOS hands the CPU to the Multiboot kernel."""
        self.id = 0
        self.tpr = 0
        self.logical_id = 0
        self.model = FLAT_MODEL
        self.svr = SEABIOS_SVR
        self.esr = 0
        self.icr = [SEABIOS_ICR_LOW, 0]
        self.lvt = dict.fromkeys(LVT_OFFSETS, LVT_MASKED)
        self.lvt[LVT_LINT0] = SEABIOS_LINT0
        self.lvt[LVT_LINT1] = SEABIOS_LINT1
        self.virtual_wire = True  # LINT0 lets the 8259 through (see _write_lvt)
        self.irr, self.isr, self.tmr = VectorSet(), VectorSet(), VectorSet()
        self.initial_count = 0
        self.divide = 0
        self.loaded_at = self.now
        self.next_fire: int | None = None

    # -- the register page -----------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if size < 4:
            return 0
        value = self._read(offset & 0xFF0)
        if value is None:
            self.esr |= ESR_ILLEGAL_REGISTER
            return 0
        return value

    def _read(self, register: int) -> int | None:
        simple = {ID: self.id << 24, VERSION: VERSION_VALUE, TPR: self.tpr, APR: 0,
                  EOI: 0, LDR: self.logical_id << 24,
                  DFR: self.model << 28 | 0x0FFFFFFF, SVR: self.svr, ESR: self.esr,
                  ICR_LOW: self.icr[0], ICR_HIGH: self.icr[1],
                  TIMER_INITIAL: self.initial_count, TIMER_DIVIDE: self.divide}
        if register in simple:
            return simple[register]
        if register == PPR:
            return self.ppr()
        if register in self.lvt:
            return self.lvt[register]
        if register == TIMER_CURRENT:
            return self.current_count()
        for base, vectors in ((ISR_BASE, self.isr), (TMR_BASE, self.tmr),
                              (IRR_BASE, self.irr)):
            if base <= register < base + 0x80:
                return vectors.word((register - base) >> 4)
        return None

    def write(self, offset: int, size: int, value: int) -> None:
        register = offset & 0xFF0
        if size < 4 or register == 0:
            return
        handler = self._writers.get(register)
        if handler is not None:
            handler(value)
        elif register in self.lvt:
            self._write_lvt(register, value)
        elif not ISR_BASE <= register < ESR + 0x80:  # ISR..ESR and the reserved
            self.esr |= ESR_ILLEGAL_REGISTER  # words after it ignore writes (QEMU)

    def _register_writers(self) -> dict[int, Callable[[int], None]]:
        def ignore(value: int) -> None:
            pass

        return {ID: self._write_id, VERSION: ignore, TPR: self._write_tpr, APR: ignore,
                PPR: ignore, EOI: lambda value: self.eoi(), LDR: self._write_ldr,
                DFR: self._write_dfr, SVR: self._write_svr, ICR_LOW: self._write_icr,
                ICR_HIGH: self._write_icr_high, TIMER_INITIAL: self._write_initial,
                TIMER_CURRENT: ignore, TIMER_DIVIDE: self._write_divide}

    def _write_id(self, value: int) -> None:
        self.id = value >> 24

    def _write_ldr(self, value: int) -> None:
        self.logical_id = value >> 24

    def _write_dfr(self, value: int) -> None:
        self.model = value >> 28

    def _write_tpr(self, value: int) -> None:
        self.tpr = value & 0xFF
        self.signal()

    def _write_svr(self, value: int) -> None:
        self.svr = value & SVR_BITS
        self.signal()

    def _write_icr_high(self, value: int) -> None:
        self.icr[1] = value

    def _write_lvt(self, register: int, value: int) -> None:
        self.lvt[register] = value
        if register == LVT_TIMER:
            self._schedule()
        elif register == LVT_LINT0:
            # The 8259's INTR passes through LINT0 when unmasked in ExtINT mode.
            self.virtual_wire = not value & LVT_MASKED and delivery_mode(value) == EXTINT
            self.signal()

    # -- priority --------------------------------------------------------------------
    @property
    def software_enabled(self) -> bool:
        """SVR bit 8 (set by SeaBIOS before the kernel runs)."""
        return bool(self.svr & SVR_ENABLE)

    def ppr(self) -> int:
        """The processor priority: the TPR, or the in-service vector's class if higher
        (SDM "Processor Priority Register"; QEMU's apic_get_ppr)."""
        in_service = self.isr.highest() or 0
        return self.tpr if self.tpr >> 4 >= in_service >> 4 else in_service & 0xF0

    def _deliverable(self) -> int | None:
        """The highest requested vector whose class is above the PPR's (the SDM's
        rule: a PPR of 0 lets every vector through)."""
        if not self.software_enabled:
            return None
        vector = self.irr.highest()
        if vector is None:
            return None
        ppr = self.ppr()
        return None if ppr and vector & 0xF0 <= ppr & 0xF0 else vector

    # -- the CPU's side --------------------------------------------------------------
    def set_line(self, line: int, level: bool) -> None:
        """The APIC has no ISA lines: the I/O APIC and LINT0 bring them."""

    def pending(self) -> bool:
        """The CPU's INTR input (asked after every hypercall: an empty IRR is the
        short way)."""
        if self.irr.bits and self._deliverable() is not None:
            return True
        return self.virtual_wire and self.pic.pending()

    def acknowledge(self) -> int:
        """The INTA cycle. The 8259's ExtINT goes first, ignoring priority (QEMU's
        apic_get_interrupt); otherwise the vector moves from IRR to ISR, or with
        nothing deliverable left the spurious vector is handed out."""
        if self.virtual_wire and self.pic.pending():
            return self.pic.acknowledge()
        if not self.software_enabled or self.irr.highest() is None:
            return self.pic.acknowledge()
        vector = self._deliverable()
        if vector is None:  # the request fell below the PPR before INTA
            return self.svr & 0xFF
        self.irr.discard(vector)
        self.isr.add(vector)
        return vector

    def eoi(self) -> None:
        """The highest in-service vector is done; a level-triggered one is broadcast
        to the I/O APIC (its remote IRR)."""
        vector = self.isr.highest()
        if vector is None:
            return
        self.isr.discard(vector)
        if vector in self.tmr:
            self.eoi_broadcast(vector)
        self.signal()

    def accept(self, vector: int, level: bool) -> None:
        """A fixed interrupt arrives (from the I/O APIC, an IPI, an LVT entry): IRR,
        and TMR says whether EOI must be broadcast (QEMU's apic_set_irq)."""
        self.irr.add(vector)
        if level:
            self.tmr.add(vector)
        else:
            self.tmr.discard(vector)
        self.signal()

    def deliver(self, mode: int, vector: int, level: bool) -> None:
        """An interrupt message for this APIC by MODE: fixed and lowest priority set
        IRR, NMI raises the CPU's NMI pin; INIT, SIPI and SMI are dropped."""
        if mode in (FIXED, LOWEST_PRIORITY, EXTINT):
            self.accept(vector, level)
        elif mode == NMI:
            self.raise_nmi()
            self.signal()

    def message(self, destination: int, logical: bool, mode: int, vector: int,
                level: bool) -> None:
        """An interrupt message on the APIC bus (from the I/O APIC): taken if it is
        addressed to this APIC."""
        if self.matches(destination, logical):
            self.deliver(mode, vector, level)

    def matches(self, destination: int, logical: bool) -> bool:
        """Whether a message for DESTINATION is this APIC's (SDM "Determining IPI
        Destination"): its ID or broadcast; logically, the flat model's bit mask or
        the cluster model's cluster and mask."""
        if not logical:
            return destination in (self.id, BROADCAST_ID)
        if self.model == FLAT_MODEL:
            return bool(destination & self.logical_id)
        return (destination >> 4 == self.logical_id >> 4
                and bool(destination & self.logical_id & 0xF))

    def lint1_nmi(self) -> None:
        """Something drives LINT1 (the NMI button): its LVT entry decides."""
        self._local_deliver(LVT_LINT1)

    def _local_deliver(self, register: int) -> None:
        entry = self.lvt[register]
        if entry & LVT_MASKED:
            return
        level = register in (LVT_LINT0, LVT_LINT1) and bool(entry & LVT_LEVEL)
        self.deliver(delivery_mode(entry), entry & 0xFF, level)

    # -- interprocessor interrupts ---------------------------------------------------
    def _write_icr(self, value: int) -> None:
        """Writing ICR low sends: only to this CPU can anything arrive (QEMU's
        apic_deliver: the shorthand, or the destination in ICR high)."""
        self.icr[0] = value
        shorthand = (value >> ICR_SHORTHAND_SHIFT) & 3
        if shorthand == ALL_BUT_SELF:
            return
        if shorthand == 0 and not self.matches(self.icr[1] >> 24,
                                               bool(value & LOGICAL_DESTINATION)):
            return
        mode = delivery_mode(value)
        if mode in (FIXED, LOWEST_PRIORITY, NMI):
            self.deliver(mode, value & 0xFF, bool(value & LVT_LEVEL))

    # -- the timer -------------------------------------------------------------------
    def _write_initial(self, value: int) -> None:
        self.initial_count = value
        self.loaded_at = self.now
        self._schedule()

    def _write_divide(self, value: int) -> None:
        self.divide = value & 0xB

    @property
    def _shift(self) -> int:
        """Divide configuration bits 3,1,0 to a power of two: 0b111 divides by 1
        (SDM figure "Divide Configuration Register"; QEMU's count_shift)."""
        code = (self.divide & 3) | ((self.divide >> 1) & 4)
        return (code + 1) & 7

    def _counted(self) -> int:
        return (self.now - self.loaded_at) >> self._shift

    def current_count(self) -> int:
        counted = self._counted()
        if self.lvt[LVT_TIMER] & LVT_PERIODIC:
            return self.initial_count - counted % (self.initial_count + 1)
        return max(self.initial_count - counted, 0)

    def _schedule(self) -> None:
        """When the timer fires next (QEMU's apic_next_timer): never while masked, or
        once a one-shot count has run out."""
        self.next_fire = None
        if self.lvt[LVT_TIMER] & LVT_MASKED:
            return
        period = self.initial_count + 1
        counted = self._counted()
        if self.lvt[LVT_TIMER] & LVT_PERIODIC:
            if not self.initial_count:
                return
            due = (counted // period + 1) * period
        elif counted >= self.initial_count:
            return
        else:
            due = period
        self.next_fire = self.loaded_at + (due << self._shift)

    def advance(self, ticks: int) -> None:
        """TICKS of the bus clock passed; a due timer fires once, however many
        periods passed (as the PIT coalesces a long sleep into one interrupt)."""
        self.now += ticks
        if self.next_fire is not None and self.now >= self.next_fire:
            self._local_deliver(LVT_TIMER)
            self._schedule()

    def ticks_to_next_irq(self) -> int | None:
        return None if self.next_fire is None else max(self.next_fire - self.now, 0)
