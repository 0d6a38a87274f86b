"""The PC's interrupt wiring, in one object the run loop asks: the lines devices drive
and the CPU's two interrupt pins.

Devices raise and lower numbered lines (ISA IRQs, GSIs); every interrupt controller
connected listens to the lines (the 8259 pair and the I/O APIC, as QEMU's GSI router
feeds both). The CPU's INTR input is one object's (`intr`: on a PC the local APIC,
which lets the 8259's ExtINT through LINT0); without one, the controllers are asked in
order and the INTA cycle takes the vector from the first that has one pending. The NMI
pin is a latch: raised by the local APIC, taken once by the CPU.
"""

from typing import Protocol


class InterruptController(Protocol):
    def set_line(self, line: int, level: bool) -> None:
        """A device drives LINE high or low (a controller ignores lines it has not)."""

    def pending(self) -> bool:
        """Whether it asks the CPU for an interrupt."""

    def acknowledge(self) -> int:
        """The INTA cycle: the vector it hands the CPU."""


class IrqRouter:
    def __init__(self, *controllers: InterruptController,
                 intr: InterruptController | None = None):
        self.controllers = list(controllers)
        self.intr = intr
        self.nmi = False

    def set_line(self, line: int, level: bool) -> None:
        for controller in self.controllers:
            controller.set_line(line, level)

    def pulse(self, line: int) -> None:
        """An edge on LINE (the PIT and the ATA disk are edge-triggered on a PC)."""
        self.set_line(line, True)
        self.set_line(line, False)

    def pending(self) -> bool:
        """Asked after every hypercall: a loop, not any() over a generator (a third of
        a microsecond less)."""
        if self.intr is not None:
            return self.intr.pending()
        for controller in self.controllers:  # noqa: SIM110
            if controller.pending():
                return True
        return False

    def acknowledge(self) -> int:
        """The vector of the first controller with one pending; with none (the request
        went away before INTA), the last one answers as its hardware does."""
        if self.intr is not None:
            return self.intr.acknowledge()
        for controller in self.controllers:
            if controller.pending():
                return controller.acknowledge()
        return self.controllers[-1].acknowledge()

    def raise_nmi(self) -> None:
        """The NMI pin: latched until the CPU takes it (SDM 6.7, "Nonmaskable
        Interrupt (NMI)")."""
        self.nmi = True

    def take_nmi(self) -> bool:
        """Whether an NMI was latched; the latch clears."""
        raised, self.nmi = self.nmi, False
        return raised
