"""Why a run ended. Every way a guest can stop is one of these kinds, so the run loop,
the summary and the CLI's exit status all read the same record."""

from dataclasses import dataclass
from enum import Enum

from pvtool.machine import cpu as regs

# What `--json` shows of the CPU at the stop: the registers a fault's diagnosis needs.
STOP_REGISTERS = {
    "eax": regs.EAX, "ebx": regs.EBX, "ecx": regs.ECX, "edx": regs.EDX,
    "esi": regs.ESI, "edi": regs.EDI, "ebp": regs.EBP, "esp": regs.ESP,
    "eip": regs.EIP, "eflags": regs.EFLAGS,
    "cs": regs.CS, "ds": regs.DS, "es": regs.ES, "fs": regs.FS, "gs": regs.GS,
    "ss": regs.SS, "cr0": regs.CR0, "cr2": regs.CR2, "cr3": regs.CR3, "cr4": regs.CR4,
}  # fmt: skip


class StopKind(Enum):
    GUEST_EXIT = "guest-exit"  # isa-debug-exit: the guest chose its exit code
    SHUTDOWN = "shutdown"  # SCHEDOP_shutdown (poweroff, reboot...)
    CRASH = "crash"  # the hypervisor crashed the domain (Xen's domain_crash)
    TRIPLE_FAULT = "triple-fault"  # a real PC would reset
    HALTED = "halted"  # hlt (or SCHEDOP_block) with nothing left that could wake it
    INSN_LIMIT = "insn-limit"  # --max-insns
    TIMEOUT = "timeout"  # --timeout
    EMULATOR_ERROR = "emulator-error"  # Unicorn refused to go on (unmapped fetch...)
    NOT_MODELED = "not-modeled"  # the guest needs what pvtool does not model (Departures)


@dataclass(frozen=True)
class Stop:
    kind: StopKind
    reason: str
    eip: int = 0
    code: int | None = None  # the guest's exit code, for GUEST_EXIT and SHUTDOWN
    symbol: str = ""  # where eip is in the image, `name+0x12`, when it has symbols

    @property
    def guest_chose(self) -> bool:
        """True when the guest ended the run on purpose."""
        return self.kind in (StopKind.GUEST_EXIT, StopKind.SHUTDOWN)

    def describe(self) -> str:
        where = f" at eip {self.eip:#010x}" if not self.guest_chose else ""
        if where and self.symbol:
            where += f" <{self.symbol}>"
        return f"{self.kind.value}: {self.reason}{where}"


def registers_at_stop(cpu: regs.Cpu) -> dict[str, int]:
    """The CPU's registers by name, and its CPL, as the run left them."""
    values = {name: cpu.read(reg) for name, reg in STOP_REGISTERS.items()}
    values["cpl"] = cpu.cpl
    return values
