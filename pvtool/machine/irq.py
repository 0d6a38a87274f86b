"""The PC's interrupt wiring, in one object the run loop asks.

Devices raise and lower numbered lines (ISA IRQs, GSIs); every interrupt controller
connected listens to the lines (the 8259 pair now; the I/O APIC would listen to the
same lines, as QEMU's GSI router feeds both). The CPU's INTR input asks the
controllers in order, the first connected first (a local APIC goes before the 8259's
ExtINT, as QEMU's cpu_get_pic_interrupt asks), and the INTA cycle takes the vector
from the first that has one pending.
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
    def __init__(self, *controllers: InterruptController):
        self.controllers = list(controllers)

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
        for controller in self.controllers:  # noqa: SIM110
            if controller.pending():
                return True
        return False

    def acknowledge(self) -> int:
        """The vector of the first controller with one pending; with none (the request
        went away before INTA), the last one answers as its hardware does."""
        for controller in self.controllers:
            if controller.pending():
                return controller.acknowledge()
        return self.controllers[-1].acknowledge()
