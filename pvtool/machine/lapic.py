"""A minimal local xAPIC (MMIO page at 0xFEE00000): registers that read and write as
a uniprocessor kernel expects, and nothing behind them.

Interrupts on this machine come from the 8259A pair through LINT0 (virtual wire mode),
so the APIC only has to look plausible to a kernel that probes it: its layout is the
Intel SDM's (vol. 3A, the APIC chapter's table "Local APIC Register Address Map"), each
register a 32-bit word at a 16-byte-aligned offset. Departures, all deliberate:
- No interrupt is ever accepted or delivered: IRR, ISR and TMR read 0, EOI is accepted
  and ignored, and ICR writes are stored without sending anything (there is no other
  processor and no I/O APIC); the delivery status bit always reads idle.
- The timer does not count or fire: the initial count is stored, the current count
  reads 0 (as a one-shot timer that has expired).
- ESR never records an error.
- Sub-register accesses: reads shift out the addressed bytes; writes take effect only
  at the register's own offset (the SDM leaves other accesses undefined).
"""

APIC_BASE = 0xFEE00000
APIC_SIZE = 0x1000

ID, VERSION, TPR, APR, PPR, EOI = 0x20, 0x30, 0x80, 0x90, 0xA0, 0xB0
LDR, DFR, SVR, ESR = 0xD0, 0xE0, 0xF0, 0x280
ICR_LOW, ICR_HIGH = 0x300, 0x310
LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR = (
    0x320, 0x330, 0x340, 0x350, 0x360, 0x370)
TIMER_INITIAL, TIMER_CURRENT, TIMER_DIVIDE = 0x380, 0x390, 0x3E0

VERSION_VALUE = 0x00050014  # version 0x14 (xAPIC), six LVT entries (max LVT 5)
LVT_MASKED = 0x10000
SVR_ENABLE = 0x100

# offset: (value after reset, bits a write may change). Read-only registers have no
# writable bits; write-only EOI reads 0. The SDM's "Local APIC State After Power-Up or
# Reset" and the register figures of "Local Vector Table", "Interrupt Command Register",
# "Logical Destination Mode", "Task Priority Register" and "Spurious Interrupt".
REGISTERS: dict[int, tuple[int, int]] = {
    ID: (0, 0xFF000000),
    VERSION: (VERSION_VALUE, 0),
    TPR: (0, 0xFF),
    APR: (0, 0),
    PPR: (0, 0),
    EOI: (0, 0),
    LDR: (0, 0xFF000000),
    DFR: (0xFFFFFFFF, 0xF0000000),
    SVR: (0xFF, 0x3FF),
    ESR: (0, 0),
    ICR_LOW: (0, 0x000CCFFF),
    ICR_HIGH: (0, 0xFF000000),
    LVT_TIMER: (LVT_MASKED, 0x300FF),
    LVT_THERMAL: (LVT_MASKED, 0x107FF),
    LVT_PERF: (LVT_MASKED, 0x107FF),
    LVT_LINT0: (LVT_MASKED, 0x1A7FF),
    LVT_LINT1: (LVT_MASKED, 0x1A7FF),
    LVT_ERROR: (LVT_MASKED, 0x100FF),
    TIMER_INITIAL: (0, 0xFFFFFFFF),
    TIMER_CURRENT: (0, 0),
    TIMER_DIVIDE: (0, 0xB),
}


class LocalApic:
    """The APIC page: `read(offset, size)` and `write(offset, size, value)` with
    OFFSET inside the 4 KiB page."""

    def __init__(self):
        self.registers: dict[int, int] = {}
        self.eoi_writes = 0
        self.reset()

    def reset(self) -> None:
        self.registers = {offset: reset for offset, (reset, _) in REGISTERS.items()}

    def read(self, offset: int, size: int) -> int:
        register, byte = offset & ~0xF, offset & 0xF
        if byte + size > 4:
            return 0
        value = self._value(register)
        return (value >> (8 * byte)) & ((1 << (8 * size)) - 1)

    def _value(self, register: int) -> int:
        if register == PPR:
            return self.registers[TPR]  # no interrupt in service: PPR is the TPR
        return self.registers.get(register, 0)

    def write(self, offset: int, size: int, value: int) -> None:
        if offset not in REGISTERS:
            return
        if offset == EOI:
            self.eoi_writes += 1
        _, writable = REGISTERS[offset]
        old = self.registers[offset]
        self.registers[offset] = (old & ~writable) | (value & writable)

    @property
    def software_enabled(self) -> bool:
        """SVR bit 8: the APIC is software-enabled (it starts disabled)."""
        return bool(self.registers[SVR] & SVR_ENABLE)
