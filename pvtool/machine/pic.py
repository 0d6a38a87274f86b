"""The two cascaded Intel 8259A interrupt controllers of a PC.

The master (ports 0x20-0x21) takes IRQ0-7; the slave (0xA0-0xA1) takes IRQ8-15 and
drives the master's IR2. Each chip is a PortDevice; the pair is what the run loop talks
to: devices raise and lower lines, the CPU samples INTR (`pending`) and runs the INTA
cycle (`acknowledge`). Sections are cited by their titles in the Intel 8259A
datasheet: "Interrupt sequence", "Programming the 8259A" (ICW1-ICW4, OCW1-OCW3),
"Fully nested mode", "Special mask mode", "Poll command", "Edge and level triggered
modes".

Departures from the datasheet, all of them also QEMU's (hw/intc/i8259.c):
- In edge mode an IRR bit, once latched by a rising edge, stays set until the INTA
  cycle (or an ICW1) clears it, even if the line falls first. On the chip the request
  must be held until the first INTA; an emulated device only pulses its line, and the
  CPU samples INTR later, between two instruction slices.
- ICW1 without IC4 clears the ICW4 functions but the chip still answers INTA with an
  8086-style vector: the MCS-80/85 CALL sequence has no meaning on a PC.
- The slave's ICW3 identity is stored, not compared with the cascade address: the slave
  is wired to IR2, and the master's ICW3 decides whether IR2 is a cascade input.
- Buffered mode (ICW4 BUF, M/S) changes nothing: there is no data bus to buffer.
"""

from collections.abc import Callable

MASTER_BASE, SLAVE_BASE = 0x20, 0xA0
CASCADE_IRQ = 2  # the master input the slave's INT pin drives on a PC

ICW1_IC4, ICW1_SNGL, ICW1_LTIM, ICW1_INIT = 0x01, 0x02, 0x08, 0x10
ICW4_AEOI, ICW4_SFNM = 0x02, 0x10
OCW3_SELECT = 0x08
OCW3_RIS, OCW3_RR, OCW3_POLL, OCW3_SMM, OCW3_ESMM = 0x01, 0x02, 0x04, 0x20, 0x40
POLL_INTERRUPT = 0x80  # bit 7 of the poll word: a request was found
POLL_NOTHING = 0x00  # the poll word without a request (level bits undefined: QEMU's 0)

# OCW2 commands: bits 7-5 (R, SL, EOI).
OCW2_ROTATE_AEOI_CLEAR, OCW2_NONSPECIFIC_EOI, OCW2_NOP, OCW2_SPECIFIC_EOI = 0, 1, 2, 3
OCW2_ROTATE_AEOI_SET, OCW2_ROTATE_NONSPECIFIC, OCW2_SET_PRIORITY = 4, 5, 6
OCW2_ROTATE_SPECIFIC = 7


class Pic8259:
    """One 8259A. `on_change` is called whenever its INT output may have changed.
    ICW3 means a bit mask of slave inputs to a master and an identity to a slave."""

    def __init__(self, *, is_master: bool, on_change: Callable[[], None] = lambda: None):
        self.is_master = is_master
        self._on_change = on_change
        self.lines = 0  # the IR inputs' levels, for edge detection
        self.irr = 0
        self.isr = 0
        self.imr = 0
        self.vector_base = 0
        self.lowest_priority = 7  # after ICW1, IR0 is the highest priority
        self.level_triggered = False
        self.single = False
        self.cascade_inputs = 0  # master: ICW3's bit mask of slave inputs
        self.slave_id = 0  # slave: ICW3's identity
        self.auto_eoi = False
        self.rotate_on_auto_eoi = False
        self.special_fully_nested = False
        self.special_mask = False
        self.read_isr = False
        self.poll = False
        self._init_step = 0  # 0: operational; 2, 3, 4: the ICW expected next
        self._needs_icw4 = False

    # -- the IR inputs -----------------------------------------------------------
    def set_line(self, irq: int, level: bool) -> None:
        """Drive input IRQ (0-7). "Edge and level triggered modes": in edge mode only
        a low-to-high transition sets IRR; in level mode IRR follows the line."""
        bit = 1 << irq
        if level:
            if self.level_triggered or not self.lines & bit:
                self.irr |= bit
            self.lines |= bit
        else:
            self.lines &= ~bit
            if self.level_triggered:
                self.irr &= ~bit
        self._on_change()

    # -- priority resolution -----------------------------------------------------
    def _highest(self, bits: int) -> int | None:
        """The highest-priority level in BITS under the current rotation."""
        if not bits:  # the usual answer, asked after every hypercall
            return None
        for rank in range(8):
            irq = (self.lowest_priority + 1 + rank) & 7
            if bits & (1 << irq):
                return irq
        return None

    def _rank(self, irq: int) -> int:
        return (irq - self.lowest_priority - 1) & 7

    def requested(self) -> int | None:
        """The level the INT output is asserted for, if any ("Fully nested mode"):
        the highest unmasked request above every level in service. In special mask
        mode, masked levels in service block nothing; in special fully nested mode
        an in-service cascade input does not block its own slave."""
        request = self._highest(self.irr & ~self.imr)
        if request is None:
            return None
        blocking = self.isr
        if self.special_mask:
            blocking &= ~self.imr
        if self.special_fully_nested:
            blocking &= ~self.cascade_inputs
        in_service = self._highest(blocking)
        if in_service is not None and self._rank(in_service) <= self._rank(request):
            return None
        return request

    def acknowledge(self, irq: int) -> None:
        """The INTA pulses for level IRQ: IRR to ISR ("Interrupt sequence"). A
        level-triggered request stays in IRR while its line is high; in AEOI mode
        the ISR bit is cleared again at the end of the last INTA pulse."""
        bit = 1 << irq
        if not self.level_triggered:
            self.irr &= ~bit
        if self.auto_eoi:
            if self.rotate_on_auto_eoi:
                self.lowest_priority = irq
        else:
            self.isr |= bit
        self._on_change()

    def is_cascade(self, irq: int) -> bool:
        return not self.single and bool(self.cascade_inputs & (1 << irq))

    # -- the ports ---------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if offset == 1:
            return self.imr  # OCW1
        if self.poll:
            return self._poll()
        return self.isr if self.read_isr else self.irr

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        if offset == 0 and value & ICW1_INIT:
            self._icw1(value)
        elif offset == 1 and self._init_step:
            self._icw(value)
        elif offset == 1:
            self.imr = value  # OCW1
        elif value & OCW3_SELECT:
            self._ocw3(value)
        else:
            self._ocw2(value >> 5, value & 7)
        self._on_change()

    def _poll(self) -> int:
        """"Poll command": the read is an INTA for this chip alone; bit 7 says whether
        a level was found, bits 2-0 which."""
        self.poll = False
        irq = self.requested()
        if irq is None:
            return POLL_NOTHING
        self.acknowledge(irq)
        return POLL_INTERRUPT | irq

    # -- initialisation ----------------------------------------------------------
    def _icw1(self, value: int) -> None:
        """ICW1 starts the sequence: the edge-sense latches and IMR are cleared, IR7
        gets the lowest priority, special mask mode is off, reads give IRR, and
        without IC4 the ICW4 functions are cleared ("Initialization command words")."""
        self.lines = self.irr = self.isr = self.imr = 0
        self.lowest_priority = 7
        self.special_mask = self.read_isr = self.poll = False
        self.level_triggered = bool(value & ICW1_LTIM)
        self.single = bool(value & ICW1_SNGL)
        self._needs_icw4 = bool(value & ICW1_IC4)
        if not self._needs_icw4:
            self._icw4(0)
        self._init_step = 2

    def _icw(self, value: int) -> None:
        if self._init_step == 2:
            self.vector_base = value & 0xF8  # ICW2: T7-T3; the level fills bits 2-0
        elif self._init_step == 3 and self.is_master:
            self.cascade_inputs = value
        elif self._init_step == 3:
            self.slave_id = value & 7
        else:
            self._icw4(value)
        self._init_step = self._next_icw()

    def _next_icw(self) -> int:
        if self._init_step == 2 and not self.single:
            return 3
        if self._init_step in (2, 3) and self._needs_icw4:
            return 4
        return 0

    def _icw4(self, value: int) -> None:
        self.auto_eoi = bool(value & ICW4_AEOI)
        self.special_fully_nested = bool(value & ICW4_SFNM)

    # -- operation command words -------------------------------------------------
    def _ocw2(self, command: int, level: int) -> None:
        """OCW2: end of interrupt and priority rotation ("Automatic rotation",
        "Specific rotation")."""
        if command in (OCW2_NONSPECIFIC_EOI, OCW2_ROTATE_NONSPECIFIC):
            level = self._highest(self.isr)
            if level is None:
                return
        if command in (OCW2_NONSPECIFIC_EOI, OCW2_SPECIFIC_EOI,
                       OCW2_ROTATE_NONSPECIFIC, OCW2_ROTATE_SPECIFIC):
            self.isr &= ~(1 << level)
        if command in (OCW2_ROTATE_NONSPECIFIC, OCW2_ROTATE_SPECIFIC, OCW2_SET_PRIORITY):
            self.lowest_priority = level
        elif command in (OCW2_ROTATE_AEOI_SET, OCW2_ROTATE_AEOI_CLEAR):
            self.rotate_on_auto_eoi = command == OCW2_ROTATE_AEOI_SET

    def _ocw3(self, value: int) -> None:
        """OCW3: ESMM qualifies SMM; RR qualifies RIS; P makes the next read a poll."""
        if value & OCW3_ESMM:
            self.special_mask = bool(value & OCW3_SMM)
        if value & OCW3_RR:
            self.read_isr = bool(value & OCW3_RIS)
        self.poll = bool(value & OCW3_POLL)


class Pic8259Pair:
    """The PC's master and slave, the slave's INT wired to the master's IR2.

    `master` and `slave` are the PortDevices for 0x20-0x21 and 0xA0-0xA1; `pending()`
    is the CPU's INTR input, `acknowledge()` the INTA cycle.
    """

    def __init__(self):
        self.master = Pic8259(is_master=True)
        self.slave = Pic8259(is_master=False, on_change=self._update_cascade)

    def _update_cascade(self) -> None:
        self.master.set_line(CASCADE_IRQ, self.slave.requested() is not None)

    def _chip(self, irq: int) -> tuple[Pic8259, int]:
        if not 0 <= irq < 16:
            raise ValueError(f"IRQ {irq} does not exist on a PC (0-15)")
        return (self.master, irq) if irq < 8 else (self.slave, irq - 8)

    def set_line(self, irq: int, level: bool) -> None:
        """ISA line IRQ (0-15) driven to LEVEL."""
        chip, line = self._chip(irq)
        chip.set_line(line, level)

    def pending(self) -> bool:
        """The INTR line."""
        return self.master.requested() is not None

    def acknowledge(self) -> int:
        """The INTA cycle; returns the vector on the data bus.

        With no request left by the time of INTA (the line was masked, or nothing
        was pending), the master answers with its IR7 vector and sets no ISR bit;
        when the master chose the cascade input but the slave has nothing, the
        master's IR2 goes in service and the slave answers with its IR7 vector
        without setting its own ISR bit (datasheet, "Interrupt sequence", note on
        the default IR7; Linux checks for both spurious vectors).
        """
        irq = self.master.requested()
        if irq is None:
            return self.master.vector_base | 7
        self.master.acknowledge(irq)
        if not self.master.is_cascade(irq):
            return self.master.vector_base | irq
        slave_irq = self.slave.requested()
        if slave_irq is None:
            return self.slave.vector_base | 7
        self.slave.acknowledge(slave_irq)
        return self.slave.vector_base | slave_irq
