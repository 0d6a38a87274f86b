"""Virtual time: the guest's clock advances with the instructions it executes, never
with the host's, so every run of a guest sees its timer interrupts at the same points
and prints the same bytes.

The virtual CPU executes VIRTUAL_HZ instructions a second (about Unicorn's realistic
speed, so virtual and wall time stay comparable); the PIT's 1.193182 MHz input clock is
derived from the instruction count with integer arithmetic, without drift.
"""

VIRTUAL_HZ = 100_000_000


class VirtualClock:
    def __init__(self, device_hz: int):
        self.device_hz = device_hz
        self.insns = 0

    def advance(self, insns: int) -> int:
        """Move time on by INSNS instructions; return how many device ticks passed."""
        before = self.device_ticks
        self.insns += insns
        return self.device_ticks - before

    @property
    def device_ticks(self) -> int:
        return self.insns * self.device_hz // VIRTUAL_HZ

    @property
    def seconds(self) -> float:
        return self.insns / VIRTUAL_HZ

    def insns_until(self, device_ticks: int) -> int:
        """Instructions to run until DEVICE_TICKS more device ticks have passed."""
        target = self.device_ticks + device_ticks
        insns = -(-target * VIRTUAL_HZ // self.device_hz) - self.insns
        return max(insns, 1)
