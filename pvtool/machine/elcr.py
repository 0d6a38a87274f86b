"""The PIIX3's edge/level control registers, ELCR1 and ELCR2 at 0x4D0 and 0x4D1 (Intel
82371SB datasheet, section 4.3.2): a set bit makes that ISA line level-triggered at
the 8259. SeaBIOS sets the lines it routes PCI interrupts to; on QEMU's i440FX PC a
kernel finds IRQ 10 and 11 level-triggered (0x4D1 reads 0x0C, measured with
guests/portscan). QEMU keeps each register in its 8259 (hw/intc/i8259_common.c) as a
one-port region of its own, so a word or dword access reads the one register
repeated.

Departures: the registers are kept and read back, but the 8259 pair goes on treating
every line as edge-triggered (no pvtool device shares a line, and none of the PCI
devices pvtool models raises one).
"""

from pvtool.machine.ports import PortBus, Wide

ELCR_PORT = 0x4D0
ELCR2_AFTER_SEABIOS = 0x0C  # IRQ 10 and 11: where SeaBIOS routes PCI's INTA-INTD
# The bits each register can hold: IRQ 0-2 and 8, 13 are always edge (82371SB 4.3.2).
WRITABLE = (0xF8, 0xDE)


class EdgeLevelControl:
    """One register: INDEX 0 for the master 8259's lines, 1 for the slave's."""

    def __init__(self, index: int, value: int = 0):
        self.writable = WRITABLE[index]
        self.value = value

    def read(self, offset: int, size: int) -> int:
        return self.value

    def write(self, offset: int, size: int, value: int) -> None:
        self.value = value & self.writable


def register_elcr(ports: PortBus) -> list[EdgeLevelControl]:
    registers = [EdgeLevelControl(0), EdgeLevelControl(1, ELCR2_AFTER_SEABIOS)]
    for index, register in enumerate(registers):
        ports.register(register, ELCR_PORT + index, 1, width=1, wide=Wide.SAME_REGISTER)
    return registers
