"""The PC's I/O APIC at 0xFEC00000, as QEMU 7.2 models it (hw/intc/ioapic.c).

The guest writes a register index to IOREGSEL (offset 0x00) and reads or writes the
register through IOWIN (0x10) (Intel 82093AA datasheet, "Register Description"): ID
(0), version (1), arbitration (2), and 24 redirection entries of two words each from
index 0x10. Version 0x20 also has an EOI register at 0x40. Measured on QEMU with
guests/apicprobe: version 0x00170020, ID and arbitration read the 4-bit ID in bits
24-27, IOREGSEL keeps 8 bits, every entry resets to masked (0x10000) and stores every
bit written but delivery status (12) and remote IRR (14), which are read-only.

It listens to the same lines as the 8259 pair: ISA IRQ 0 (the PIT) is input 2, the
other lines are the inputs of the same number (QEMU's ioapic_set_irq; the MADT's
interrupt source override says so). An edge-triggered input delivers on every rising
request unless masked; a level-triggered one delivers while its line is high and its
remote IRR clear, and remote IRR is set until the local APIC broadcasts the vector's
EOI (or the guest writes the EOI register).

Departures (all QEMU's too): the polarity bit is stored but the input's sense is not
inverted; delivery status never reads as pending; the arbitration ID is the ID.
"""

from collections.abc import Callable

from pvtool.machine.lapic import EXTINT, delivery_mode

IOAPIC_BASE = 0xFEC00000
IOAPIC_SIZE = 0x1000
PINS = 24
VERSION_VALUE = 0x20 | (PINS - 1) << 16

IOREGSEL, IOWIN, EOI_REGISTER = 0x00, 0x10, 0x40
ID_INDEX, VERSION_INDEX, ARBITRATION_INDEX, REDIRECTION_INDEX = 0, 1, 2, 0x10
ID_SHIFT, ID_MASK = 24, 0xF

MASKED = 1 << 16
LEVEL = 1 << 15
REMOTE_IRR = 1 << 14
DELIVERY_STATUS = 1 << 12
LOGICAL = 1 << 11
READ_ONLY = REMOTE_IRR | DELIVERY_STATUS
PIT_LINE, PIT_PIN = 0, 2  # ISA IRQ 0 arrives on input 2
ID_AT_RESET = 0  # what the ID register reads until a kernel writes it


class IoApic:
    """DELIVER(destination, logical, mode, vector, level) sends an interrupt message
    to the local APICs; PIC answers an ExtINT entry's INTA."""

    def __init__(self, deliver: Callable[[int, bool, int, int, bool], None], pic):
        self.deliver = deliver
        self.pic = pic
        self.reset()

    def reset(self) -> None:
        self.id = ID_AT_RESET
        self.select = 0
        self.requests = 0  # QEMU's irr: inputs asking for delivery
        self.entries = [MASKED] * PINS

    # -- the inputs ------------------------------------------------------------------
    def set_line(self, line: int, level: bool) -> None:
        pin = PIT_PIN if line == PIT_LINE else line
        if pin >= PINS:
            return
        bit, entry = 1 << pin, self.entries[pin]
        if entry & LEVEL:
            if not level:
                self.requests &= ~bit
                return
            self.requests |= bit
            if not entry & REMOTE_IRR:
                self._service()
        elif level and not entry & MASKED:  # 82093AA: masked edges are lost
            self.requests |= bit
            self._service()

    def pending(self) -> bool:
        """Never asks the CPU itself: it sends messages to the local APIC."""
        return False

    def _service(self) -> None:
        """Send every unmasked request (QEMU's ioapic_service): an edge once; a level
        once until its EOI (remote IRR)."""
        for pin in range(PINS):
            bit, entry = 1 << pin, self.entries[pin]
            if not self.requests & bit or entry & MASKED:
                continue
            if entry & LEVEL:
                if entry & REMOTE_IRR:
                    continue
                self.entries[pin] |= REMOTE_IRR
            else:
                self.requests &= ~bit
            self._send(entry)

    def _send(self, entry: int) -> None:
        mode = delivery_mode(entry)
        vector = self.pic.acknowledge() if mode == EXTINT else entry & 0xFF
        self.deliver(entry >> 56, bool(entry & LOGICAL), mode, vector, bool(entry & LEVEL))

    def eoi(self, vector: int) -> None:
        """The local APIC's EOI of a level-triggered VECTOR: remote IRR clears, and a
        line still high delivers again."""
        for pin, entry in enumerate(self.entries):
            if entry & REMOTE_IRR and entry & 0xFF == vector:
                self.entries[pin] &= ~REMOTE_IRR
        self._service()

    # -- the registers ---------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if offset == IOREGSEL:
            return self.select
        if offset != IOWIN or size != 4:
            return 0
        if self.select in (ID_INDEX, ARBITRATION_INDEX):
            return self.id << ID_SHIFT
        if self.select == VERSION_INDEX:
            return VERSION_VALUE
        pin, high = self._entry_index()
        if pin is None:
            return 0
        return (self.entries[pin] >> (32 if high else 0)) & 0xFFFFFFFF

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == IOREGSEL:
            self.select = value & 0xFF
        elif offset == EOI_REGISTER and size == 4:
            self.eoi(value & 0xFF)
        elif offset == IOWIN and size == 4:
            self._write_window(value)

    def _write_window(self, value: int) -> None:
        if self.select == ID_INDEX:
            self.id = (value >> ID_SHIFT) & ID_MASK
            return
        pin, high = self._entry_index()
        if pin is None:
            return
        old = self.entries[pin]
        shift = 32 if high else 0
        entry = (old & ~(0xFFFFFFFF << shift)) | value << shift
        entry = (entry & ~READ_ONLY) | (old & READ_ONLY)
        if not entry & LEVEL:
            entry &= ~REMOTE_IRR  # an edge entry has no remote IRR (QEMU)
        self.entries[pin] = entry
        self._service()

    def _entry_index(self) -> tuple[int | None, bool]:
        """(the redirection entry IOREGSEL names, whether its high word)."""
        pin = (self.select - REDIRECTION_INDEX) >> 1
        if self.select < REDIRECTION_INDEX or pin >= PINS:
            return None, False
        return pin, bool(self.select & 1)
