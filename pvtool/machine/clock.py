"""Virtual time: the guest's clock advances with the instructions it executes, never
with the host's, so every run of a guest sees its timer interrupts at the same points
and prints the same bytes.

The virtual CPU executes VIRTUAL_HZ instructions a second (about Unicorn's realistic
speed, so virtual and wall time stay comparable). Each timer device has an input clock
of its own (the PIT's 1.193182 MHz, the local APIC's bus clock, the HPET's, the RTC's
32.768 kHz), derived from the instruction count with integer arithmetic, without drift.

The time-stamp counter is this clock too: `rdtsc` reads the instruction count (one TSC
tick per instruction, a VIRTUAL_HZ TSC), so a guest that converts TSC ticks into time,
as a Xen PV kernel does with vcpu_info.time (hv/events.py), or that calibrates its TSC
against the PIT, sees the same values every run and the same rate its timers count at.
The count advances a slice at a time (the run loop adds a slice's length after it
ends), so within a slice each read is one tick past the previous one: the counter is
strictly increasing, as the CPU's is (Intel SDM vol. 3, 17.17), and never ahead of the
slice's end, since every read is an instruction of the slice.
"""

from typing import Protocol

VIRTUAL_HZ = 100_000_000


class VirtualClock:
    """The instructions executed since power-on: the machine's one time base."""

    def __init__(self):
        self.insns = 0
        self.last_tsc = -1  # the last value rdtsc returned

    def advance(self, insns: int) -> None:
        self.insns += insns

    def read_tsc(self) -> int:
        """What `rdtsc` returns now: the instruction count, one past the previous read
        when the count has not moved since (module docstring)."""
        self.last_tsc = max(self.insns, self.last_tsc + 1)
        return self.last_tsc

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
