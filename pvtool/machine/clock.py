"""Virtual time: the guest's clock advances with the instructions it executes, never
with the host's, so every run of a guest sees its timer interrupts at the same points
and prints the same bytes.

The virtual CPU executes VIRTUAL_HZ instructions a second (about Unicorn's realistic
speed, so virtual and wall time stay comparable). Each timer device has an input clock
of its own (the PIT's 1.193182 MHz, the local APIC's bus clock, the HPET's, the RTC's
32.768 kHz), derived from the instruction count with integer arithmetic, without drift.
"""

from typing import Protocol

VIRTUAL_HZ = 100_000_000


class VirtualClock:
    """The instructions executed since power-on: the machine's one time base."""

    def __init__(self):
        self.insns = 0

    def advance(self, insns: int) -> None:
        self.insns += insns

    @property
    def seconds(self) -> float:
        return self.insns / VIRTUAL_HZ

    def ticks(self, hz: int) -> int:
        """Pulses of an HZ clock since power-on."""
        return self.insns * hz // VIRTUAL_HZ

    def insns_until_ticks(self, hz: int, ticks: int) -> int:
        """Instructions to run until an HZ clock has shown TICKS pulses since power-on
        (at least 1: a slice is never empty)."""
        return max(-(-ticks * VIRTUAL_HZ // hz) - self.insns, 1)


class TimedDevice(Protocol):
    """A device that counts an input clock and raises interrupts when counts expire."""

    def advance(self, ticks: int) -> None:
        """TICKS input-clock pulses passed: count them, raise what fell due."""

    def ticks_to_next_irq(self) -> int | None:
        """Pulses until its next interrupt (None: none is coming)."""


class DeviceClock:
    """One device's input clock at HZ, following the virtual clock: `elapsed` hands
    the device the pulses since it was last asked, so rounding never accumulates."""

    def __init__(self, clock: VirtualClock, hz: int, device: TimedDevice):
        self.clock = clock
        self.hz = hz
        self.device = device
        self.seen = clock.ticks(hz)

    def catch_up(self) -> None:
        now = self.clock.ticks(self.hz)
        ticks, self.seen = now - self.seen, now
        if ticks:
            self.device.advance(ticks)

    def insns_to_next_irq(self) -> int | None:
        ticks = self.device.ticks_to_next_irq()
        if ticks is None:
            return None
        return self.clock.insns_until_ticks(self.hz, self.seen + ticks)
