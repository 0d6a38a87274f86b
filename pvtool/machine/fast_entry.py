"""`syscall` and `sysenter` as the bare PC's CPU runs them: Unicorn only calls a hook
(machine/fast_call.py), so native mode does what the hardware does, as QEMU 7.2's TCG
does it (target/i386: translate.c's decoding, seg_helper.c's helper_syscall and
helper_sysenter; AMD APM vol. 3 SYSCALL, Intel SDM vol. 2B SYSENTER):

- syscall: #UD on qemu-system-i386's PC (QEMU builds the instruction only for
  x86_64) and whenever EFER.SCE is clear. In long mode: RCX = the next RIP, R11 =
  RFLAGS without RF, RFLAGS &= ~(SFMASK | RF) (and TCG_LOST, below), CS =
  STAR[47:32] (flat 64-bit code, DPL 0), SS = CS + 8, CPL 0, RIP = LSTAR (CSTAR
  from compatibility mode). In legacy mode: ECX = the next EIP, IF, RF and VM
  cleared, 32-bit CS and SS the same way, EIP = STAR[31:0].
- sysenter: #UD in 64-bit code on qemu64 (an AMD CPU); #GP(0) outside protected
  mode or with IA32_SYSENTER_CS null. Otherwise IF, RF and VM cleared, CS =
  SYSENTER_CS (64-bit code in long mode, 32-bit otherwise, DPL 0), SS = CS + 8,
  RSP = SYSENTER_ESP, RIP = SYSENTER_EIP, CPL 0.

Their returns, sysret and sysexit, are Unicorn's own: QEMU's helpers run unchanged,
and with Unicorn's qemu64 CPU (Machine's native_cpu) sysexit in 64-bit code is #UD
as on QEMU (tests/machine/test_long_mode.py compares them all with QEMU).
"""

from pvtool.machine.context import HF_CS64
from pvtool.machine.cpu import CR0, R11, RCX, RFLAGS, RIP, Cpu, SegmentCache
from pvtool.machine.fast_call import FastCall, FastCallKind
from pvtool.machine.interruption import Interruption, Kind
from pvtool.x86.descriptors import ACCESSED, CODE_RX, DATA_RW, SegmentDescriptor
from pvtool.x86.msrs import (
    CSTAR,
    EFER_SCE,
    IA32_EFER,
    IA32_SYSENTER_CS,
    IA32_SYSENTER_EIP,
    IA32_SYSENTER_ESP,
    LSTAR,
    SFMASK,
    SS_AFTER_CS,
    STAR,
    STAR_SYSCALL_CS_SHIFT,
)
from pvtool.x86.registers import (
    CR0_PE,
    EFLAGS_DF,
    EFLAGS_IF,
    EFLAGS_RF,
    EFLAGS_STATUS,
    EFLAGS_VM,
)
from pvtool.x86.vectors import Vector

CODE64 = SegmentDescriptor.flat(CODE_RX | ACCESSED, long=True, db=False)
CODE32 = SegmentDescriptor.flat(CODE_RX | ACCESSED)
DATA = SegmentDescriptor.flat(DATA_RW | ACCESSED)
SELECTOR_MASK = 0xFFFC  # the selectors loaded get RPL 0
LEGACY_CLEARED = EFLAGS_IF | EFLAGS_RF | EFLAGS_VM
# QEMU's long-mode syscall reloads RFLAGS from env->eflags, which under TCG holds
# neither the arithmetic flags nor DF: they come out clear whatever SFMASK says
# (measured; the hardware keeps those SFMASK leaves). QEMU is the judge.
TCG_LOST = EFLAGS_STATUS | EFLAGS_DF


class FastEntry:
    """Runs a FastCall on CPU as the PC's CPU model does; `fault` delivers an
    exception that the instruction raised (its RIP on the instruction)."""

    def __init__(self, cpu: Cpu, fault):
        self.cpu = cpu
        self.fault = fault

    def run(self, call: FastCall) -> None:
        """Do what the instruction does, and resume wherever that leaves the CPU."""
        if call.kind is FastCallKind.SYSCALL:
            self._syscall(call)
        else:
            self._sysenter(call)
        call.resume = self.cpu.ip

    def _raise(self, call: FastCall, vector: Vector, error_code: int | None = None) -> None:
        self.fault(Interruption(vector, Kind.EXCEPTION, ip=call.ip, error_code=error_code))

    def _syscall(self, call: FastCall) -> None:
        cpu = self.cpu
        if cpu.bits == 32 or not cpu.uc.msr_read(IA32_EFER) & EFER_SCE:
            self._raise(call, Vector.UD)
            return
        next_ip = call.next_ip
        selector = cpu.uc.msr_read(STAR) >> STAR_SYSCALL_CS_SHIFT & SELECTOR_MASK
        flags = cpu.read(RFLAGS)
        if cpu.long_mode:
            target = cpu.uc.msr_read(LSTAR if cpu.hflags & HF_CS64 else CSTAR)
            cpu.write(R11, flags & ~EFLAGS_RF)
            cpu.write(RFLAGS, flags & ~(cpu.uc.msr_read(SFMASK) | EFLAGS_RF | TCG_LOST))
            self._enter(selector, CODE64)
        else:
            target = cpu.uc.msr_read(STAR) & 0xFFFF_FFFF
            next_ip &= 0xFFFF_FFFF
            cpu.write(RFLAGS, flags & ~LEGACY_CLEARED)
            self._enter(selector, CODE32)
        cpu.write(RCX, next_ip)
        cpu.write(RIP, target)

    def _sysenter(self, call: FastCall) -> None:
        cpu = self.cpu
        if cpu.bits == 64 and cpu.hflags & HF_CS64:
            self._raise(call, Vector.UD)
            return
        selector = cpu.uc.msr_read(IA32_SYSENTER_CS) & SELECTOR_MASK
        if not cpu.read(CR0) & CR0_PE or selector == 0:
            self._raise(call, Vector.GP, 0)
            return
        width = cpu.width
        cpu.write(width.flags, cpu.read(width.flags) & ~LEGACY_CLEARED)
        self._enter(selector, CODE64 if cpu.long_mode else CODE32)
        cpu.write(width.sp, cpu.uc.msr_read(IA32_SYSENTER_ESP))
        cpu.write(width.ip, cpu.uc.msr_read(IA32_SYSENTER_EIP))

    def _enter(self, selector: int, code: SegmentDescriptor) -> None:
        """CPL 0 with flat CS = SELECTOR and SS after it, as the instruction loads
        them without reading the GDT."""
        self.cpu.load_segments(SegmentCache.of(selector, code),
                               SegmentCache.of(selector + SS_AFTER_CS, DATA))
