"""The ACPI PM I/O block of the PIIX4 (82371AB datasheet, "Power Management
Registers"; ACPI 6.5, 4.8), at the base SeaBIOS gives it (0x600): PM1 status and
enable (+0, +2), PM1 control (+4) and the PM timer (+8), plus the SMI command port
(0xB2) through which the OS turns ACPI mode on and off.

The PM timer counts at 3.579545 MHz on virtual time, 24 bits wide (the FADT's flags
leave TMR_VAL_EXT clear): kernels calibrate their delay loops against it. Its status
bit TMR_STS is set whenever bit 23 of the count changes, and, as on QEMU (measured
with guests/probefw), at power-on, until the OS clears it by writing 1.

Writing SLP_EN to PM1 control with the sleep type of S5 or S4 (0 and 2: the values
QEMU's DSDT gives _S5 and _S4) powers the machine off, as QEMU does.

Departures: the count moves between the run loop's slices, not within one (virtual
time advances by slices, as every timer's does); no SCI is ever raised (the timer,
power button and GPE events only set status bits), so the enable register is
storage; S3 (sleep type 1) is ignored, where QEMU suspends until a wake event; the
GPE0 block (0xAFE0) and QEMU's PCI and CPU hotplug registers (0xAE00, 0xAF00) are not
modelled and read as unassigned ports (QEMU's read 0, guests/portscan with "all"
shows them); the gap at +6 in the PM block reads 0 where QEMU's reads 0xFF.
"""

from collections.abc import Callable

PM_TIMER_HZ = 3_579_545
PM_TIMER_BITS = 24
PM1_STATUS, PM1_ENABLE, PM1_CONTROL, PM_TIMER = 0x0, 0x2, 0x4, 0x8
PM_BLOCK_PORTS, PM_REGISTER_WIDTH = 12, 2
PM1_EVENT_LEN, PM1_CONTROL_LEN, PM_TIMER_LEN = 4, 2, 4  # as the FADT declares them
TMR_STS = 0x0001
SCI_EN = 0x0001
STATUS_BITS = 0x8D31  # WAK, RTC, SLPBTN, PWRBTN, GBL, BM, TMR status (ACPI 4.8.3.1.1)
SLP_EN, SLP_TYP_SHIFT, SLP_TYP_MASK = 0x2000, 10, 0x7
POWER_OFF_SLEEP_TYPES = (0, 2)  # S5 and S4

SMI_COMMAND_PORT, SMI_PORTS = 0xB2, 2  # the APM control and status ports
SMI_COMMAND_AT_ENTRY = 0xB5  # measured with guests/portscan: SeaBIOS's last write
ACPI_ENABLE, ACPI_DISABLE = 0xF1, 0xF0  # the values the FADT tells the OS to write


class AcpiPm:
    """PM1 and the PM timer. `ticks()` is the PM timer's input clock: pulses of
    PM_TIMER_HZ since power-on."""

    def __init__(self, ticks: Callable[[], int], power_off: Callable[[], None]):
        self._ticks = ticks
        self._power_off = power_off
        self.enable = 0
        self.control = 0
        self.status = TMR_STS  # set at power-on, as on QEMU
        self._carry_at = None  # when TMR_STS next sets (None: it is already set)
        self.smi_command = SmiCommand(self)

    @property
    def timer(self) -> int:
        return self._ticks() & ((1 << PM_TIMER_BITS) - 1)

    def _status(self) -> int:
        if self._carry_at is not None and self._ticks() >= self._carry_at:
            self.status |= TMR_STS
            self._carry_at = None
        return self.status

    def read(self, offset: int, size: int) -> int:
        """The block is word registers (the timer two of them): an access is split
        into words by the port bus."""
        return self._word(offset & ~1) >> (8 * (offset & 1))

    def _word(self, offset: int) -> int:
        if offset == PM1_STATUS:
            return self._status()
        if offset == PM1_ENABLE:
            return self.enable
        if offset == PM1_CONTROL:
            return self.control
        if offset in (PM_TIMER, PM_TIMER + 2):
            return self.timer >> (8 * (offset - PM_TIMER)) & 0xFFFF
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        value <<= 8 * (offset & 1)
        offset &= ~1
        if offset == PM1_STATUS:
            self._clear_status(value & STATUS_BITS)
        elif offset == PM1_ENABLE:
            self.enable = value
        elif offset == PM1_CONTROL:
            self.control = value & ~SLP_EN  # write-only; SCI_EN too is the OS's (measured)
            sleep_type = value >> SLP_TYP_SHIFT & SLP_TYP_MASK
            if value & SLP_EN and sleep_type in POWER_OFF_SLEEP_TYPES:
                self._power_off()

    def _clear_status(self, bits: int) -> None:
        """Status bits clear when 1 is written to them; TMR_STS sets again at the
        count's next bit-23 transition."""
        self.status = self._status() & ~bits
        if bits & TMR_STS:
            half = 1 << (PM_TIMER_BITS - 1)
            self._carry_at = (self._ticks() // half + 1) * half

    def set_acpi_mode(self, on: bool) -> None:
        self.control = self.control & ~SCI_EN | (SCI_EN if on else 0)


class SmiCommand:
    """Port 0xB2: the APM control port that the FADT names SMI_CMD. QEMU's PIIX4
    sets or clears SCI_EN itself when ACPI_ENABLE or ACPI_DISABLE is written. Port
    0xB3, the APM status port, keeps the byte written (hw/isa/apm.c)."""

    def __init__(self, pm: AcpiPm):
        self.pm = pm
        self.value = SMI_COMMAND_AT_ENTRY
        self.status = 0

    def read(self, offset: int, size: int) -> int:
        return self.status if offset else self.value

    def write(self, offset: int, size: int, value: int) -> None:
        if offset:
            self.status = value
            return
        self.value = value
        if value in (ACPI_ENABLE, ACPI_DISABLE):
            self.pm.set_acpi_mode(value == ACPI_ENABLE)
