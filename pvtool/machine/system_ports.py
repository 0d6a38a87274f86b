"""The PC's system control ports: port B at 0x61 (the 8254's channel 2 gate and
output, the speaker, the refresh toggle), port A at 0x92 (fast A20 and a reset) and
the reset control register at 0xCF9, as QEMU 7.2's i440FX PC has them
(hw/audio/pcspk.c, hw/i386/port92 in hw/i386/pc.c, hw/isa/piix3.c).

Port 0x61 reads `gate2 | speaker << 1 | refresh | OUT2 << 5`. The refresh bit (4)
flips on every read, as QEMU's does; the other bits written are kept only for the
gate and the speaker. Port 0x92 keeps the byte written and resets the machine on a
rising edge of bit 0; 0xCF9 resets when bit 2 (RST_CPU) is written set and keeps bit
1 otherwise. A reset ends
the run (StopKind.RESET), as QEMU does with -no-reboot.

Departures: A20 is always on (clearing bit 1 of port 0x92 does not wrap addresses at
1 MiB); the speaker makes no sound; 0xCF9's full/soft reset distinction (bit 1) is not
kept, since every reset ends the run.
"""

from collections.abc import Callable

PORT_B, PORT_A, RESET_CONTROL = 0x61, 0x92, 0xCF9
B_GATE2, B_SPEAKER, B_REFRESH, B_OUT2 = 0x01, 0x02, 0x10, 0x20
A_RESET, A_A20 = 0x01, 0x02
RCR_SYSTEM_RESET, RCR_RESET_CPU = 0x02, 0x04
PIT_CHANNEL2, PIT_CONTROL = 2, 3  # offsets in the 8254's ports
CHANNEL2_MODE3_WORD = 0xB6  # channel 2, low then high byte, mode 3, binary


class PortB:
    """System control port B (0x61). PIT: the 8254 (set_gate, out)."""

    def __init__(self, pit):
        self.pit = pit
        self.speaker = False
        self.refresh = 0
        # QEMU's reset (pit_reset_common) leaves channel 2 in mode 3 with a count of
        # 0x10000 and its gate low; the firmware does not touch it.
        self.pit.write(PIT_CONTROL, 1, CHANNEL2_MODE3_WORD)
        self.pit.write(PIT_CHANNEL2, 1, 0)
        self.pit.write(PIT_CHANNEL2, 1, 0)
        self.pit.set_gate(PIT_CHANNEL2, False)

    def read(self, offset: int, size: int) -> int:
        self.refresh ^= B_REFRESH
        gate = self.pit.channels[PIT_CHANNEL2].gate
        out = self.pit.out(PIT_CHANNEL2)
        return int(gate) | int(self.speaker) << 1 | self.refresh | int(out) << 5

    def write(self, offset: int, size: int, value: int) -> None:
        self.pit.set_gate(PIT_CHANNEL2, bool(value & B_GATE2))
        self.speaker = bool(value & B_SPEAKER)


class PortA:
    """System control port A (0x92): reads what was last written (A20 on at boot)."""

    def __init__(self, on_reset: Callable[[str], None]):
        self.value = A_A20
        self._on_reset = on_reset

    def read(self, offset: int, size: int) -> int:
        return self.value

    def write(self, offset: int, size: int, value: int) -> None:
        rising = value & A_RESET and not self.value & A_RESET
        self.value = value & 0xFF
        if rising:
            self._on_reset("port 0x92 bit 0")


class ResetControl:
    """The PIIX3's reset control register (0xCF9)."""

    def __init__(self, on_reset: Callable[[str], None]):
        self.value = 0
        self._on_reset = on_reset

    def read(self, offset: int, size: int) -> int:
        return self.value

    def write(self, offset: int, size: int, value: int) -> None:
        if value & RCR_RESET_CPU:
            self._on_reset("0xcf9 reset control")
            return
        self.value = value & RCR_SYSTEM_RESET  # the only bit QEMU keeps
