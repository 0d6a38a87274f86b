"""A vCPU's debug registers as Xen keeps them for a PV guest, and Xen's checks on a
write (xen/arch/x86/pv/misc-hypercalls.c, set_debugreg; reads: x86emul_read_dr).
The values are stored and read back, and the breakpoints DR7 enables are armed by
hv/breakpoints.py (Unicorn has no debug unit of its own: docs/ABI.md, "Debug
registers"); a #DB records what raised it in DR6 as the CPU does (record_hits).

Xen's answers: DR0-DR3 take any 32-bit address (breakpoint_addr_ok never refuses a
compat guest's); DR4 and DR5 alias DR6 and DR7 unless CR4.DE is set, when they are
-ENODEV (#UD for a mov); DR6 gets its reserved bits forced (x86_adj_dr6_rsvd: ones
0xffff0ff0, zero bit 12); DR7 its reserved bits (x86_adj_dr7_rsvd: zeros 0xd000 and
RTM's bit 11 on a CPU without RTM, one bit 10), and -EPERM for GD (bit 13) or an I/O
breakpoint (R/W = 10) without CR4.DE; any other register is -ENODEV.
"""

from collections.abc import Callable
from dataclasses import dataclass

from pvtool.abi.xen import Errno
from pvtool.hv.errors import HypercallError

# xen/arch/x86/include/asm/x86-defns.h
DR6_DEFAULT = 0xFFFF0FF0
DR6_ZEROS = 0x00001000
DR7_DEFAULT = 0x00000400
DR7_ZEROS = 0x0000D000
DR7_RTM = 1 << 11  # forced to 0: pvtool's CPU has no RTM
DR7_GENERAL_DETECT = 1 << 13
DR7_ACTIVE_MASK = 0xFF  # the L and G enables
DR7_CONTROL_SHIFT, DR7_CONTROL_SIZE = 16, 4  # R/W and LEN of each breakpoint
DR7_RW_EXECUTE, DR7_RW_WRITE, DR7_RW_IO, DR7_RW_ACCESS = 0b00, 0b01, 0b10, 0b11
DR7_LENGTHS = {0b00: 1, 0b01: 2, 0b10: 8, 0b11: 4}  # LEN's encoding (SDM vol. 3B, 18.2.5)
BREAKPOINTS = 4
DR4_ALIAS = {4: 6, 5: 7}  # without CR4.DE (Intel SDM vol. 3, 18.2.2)
DR6_HITS = 0xF  # B0-B3: which breakpoints the last #DB was for
DR6_SINGLE_STEP = 1 << 14  # BS


@dataclass(frozen=True)
class Breakpoint:
    """One breakpoint DR7 enables: DRn's linear ADDRESS (aligned down to LENGTH, as
    the CPU compares it), its R/W condition and LENGTH in bytes (1 for execution)."""

    index: int
    address: int
    condition: int
    length: int


class DebugRegisters:
    def __init__(self):
        self.values = {i: 0 for i in range(BREAKPOINTS)} | {6: DR6_DEFAULT, 7: DR7_DEFAULT}
        self.on_change: Callable[[], None] | None = None  # DR0-DR3 or DR7 written

    def write(self, reg: int, value: int, cr4_de: bool = False) -> None:
        reg = self._register(reg, cr4_de)
        if reg == 6:
            value = (value | DR6_DEFAULT) & ~DR6_ZEROS
        elif reg == 7:
            value = _checked_dr7(value, cr4_de)
        self.values[reg] = value
        if reg != 6 and self.on_change is not None:
            self.on_change()

    def enabled(self) -> list[Breakpoint]:
        """The breakpoints DR7 enables (L or G: a PV vCPU has no task switches that
        would tell them apart)."""
        dr7 = self.values[7]
        found = []
        for index in range(BREAKPOINTS):
            if not dr7 >> (2 * index) & 0b11:
                continue
            control = dr7 >> (DR7_CONTROL_SHIFT + DR7_CONTROL_SIZE * index)
            condition = control & 0b11
            length = 1 if condition == DR7_RW_EXECUTE else DR7_LENGTHS[control >> 2 & 0b11]
            address = self.values[index] & ~(length - 1)
            found.append(Breakpoint(index, address, condition, length))
        return found

    def record_hits(self, hits: int) -> None:
        """A #DB for HITS (B0-B3 and BS bits): DR6 as the CPU leaves it, B0-B3 those of
        this exception and the other bits accumulated (xen/arch/x86/debug.c,
        x86_merge_dr6; SDM vol. 3B, 18.2.3)."""
        dr6 = self.values[6] & ~DR6_HITS | hits
        self.values[6] = (dr6 | DR6_DEFAULT) & ~DR6_ZEROS

    def read(self, reg: int, cr4_de: bool = False) -> int:
        return self.values[self._register(reg, cr4_de)]

    @staticmethod
    def _register(reg: int, cr4_de: bool) -> int:
        if reg in DR4_ALIAS and not cr4_de:
            return DR4_ALIAS[reg]
        if reg not in range(BREAKPOINTS) and reg not in (6, 7):
            raise HypercallError(Errno.ENODEV, f"debug register {reg}")
        return reg


def _checked_dr7(value: int, cr4_de: bool) -> int:
    value = (value & ~(DR7_ZEROS | DR7_RTM)) | DR7_DEFAULT
    if value & DR7_GENERAL_DETECT:
        raise HypercallError(Errno.EPERM, "DR7.GD is Xen's")
    if value & DR7_ACTIVE_MASK and not cr4_de and any(
            (value >> (DR7_CONTROL_SHIFT + DR7_CONTROL_SIZE * i)) & 3 == DR7_RW_IO
            for i in range(BREAKPOINTS)):
        raise HypercallError(Errno.EPERM, "an I/O breakpoint in DR7 without CR4.DE")
    return value
