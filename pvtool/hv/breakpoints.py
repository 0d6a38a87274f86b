"""The breakpoints of a PV vCPU's debug registers, made to fire.

Unicorn has no debug unit: DR0-DR3 and DR7 are only values (hv/debugreg.py). What
the CPU would do with them is done here with the machine's watches, armed for the
breakpoints DR7 enables whenever DR0-DR3 or DR7 change, so that a guest with none
enabled pays nothing (Intel SDM vol. 3B, 18.2-18.3; Xen loads the guest's registers
into the CPU while DR7 enables one, activate_debugregs):

- an instruction breakpoint (R/W 00) is a fault: #DB before the instruction runs, EIP
  on it. The guest's handler returns with EFLAGS.RF set in its frame so that the
  instruction then runs (HYPERVISOR_iret tells resume_at, as the CPU's RF does);
- a data breakpoint (R/W 01 writes, 11 reads and writes, LEN 1, 2, 4 or 8 bytes,
  the address aligned down to it) is a trap: #DB after the instruction, EIP on the
  next. Unicorn's memory hooks see physical addresses, so the watch is on the frame
  the linear address maps to when the breakpoint is armed (docs/ABI.md, departures);
- an I/O breakpoint (R/W 10) needs CR4.DE, which a PV vCPU has clear: set_debugreg
  refuses it (-EPERM), so none is ever armed.

DR6 then says which breakpoints the #DB is for (B0-B3); single-stepping (EFLAGS.TF)
is Unicorn's own #DB, whose BS the supervisor records (hv/traps.py).
"""

from collections.abc import Callable

from pvtool.hv.debugreg import DR7_RW_ACCESS, DR7_RW_EXECUTE, Breakpoint
from pvtool.machine.memory import PageFault, UnassignedMemory


class Breakpoints:
    def __init__(self, domain, raise_debug: Callable[[int], None]):
        """RAISE_DEBUG(ip) delivers #DB to the guest with EIP = ip."""
        self.domain = domain
        self.machine = domain.machine
        self.registers = domain.debug_registers
        self.raise_debug = raise_debug
        self.handles: list[int] = []
        self.resume_at: int | None = None  # the instruction EFLAGS.RF lets run once
        self.pending_hits = 0  # B0-B3 of a data #DB raised after this instruction
        self.registers.on_change = self.rearm

    def rearm(self) -> None:
        """Remove every watch and arm one for each breakpoint DR7 enables."""
        for handle in self.handles:
            self.machine.watches.remove(handle)
        self.handles = [handle for breakpoint in self.registers.enabled()
                        if (handle := self._arm(breakpoint)) is not None]

    def _arm(self, breakpoint: Breakpoint) -> int | None:
        hit = 1 << breakpoint.index
        if breakpoint.condition == DR7_RW_EXECUTE:
            return self.machine.watches.code(breakpoint.address,
                                             lambda address: self._executed(address, hit))
        try:
            paddr = self.domain.memory.virt_to_phys(breakpoint.address)
        except (PageFault, UnassignedMemory):
            return None  # nothing mapped there: nothing to watch until DR7 is written again
        return self.machine.watches.memory(paddr, breakpoint.length,
                                           lambda: self._accessed(hit),
                                           reads=breakpoint.condition == DR7_RW_ACCESS)

    def _executed(self, address: int, hit: int) -> None:
        if self.resume_at == address:
            self.resume_at = None
            return
        self.resume_at = None
        self.registers.record_hits(hit)
        self.machine.watches.end_slice_then(lambda: self.raise_debug(address),
                                            before_this_instruction=True)

    def _accessed(self, hit: int) -> None:
        if not self.pending_hits:
            self.machine.watches.end_slice_then(self._raise_data_debug,
                                                before_this_instruction=False)
        self.pending_hits |= hit

    def _raise_data_debug(self) -> None:
        hits, self.pending_hits = self.pending_hits, 0
        self.registers.record_hits(hits)
        self.raise_debug(self.machine.cpu.ip)
