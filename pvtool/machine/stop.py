"""Why a run ended. Every way a guest can stop is one of these kinds, so the run loop,
the summary and the CLI's exit status all read the same record."""

from dataclasses import dataclass
from enum import Enum

from pvtool.machine.cpu import (
    CR0,
    CR2,
    CR3,
    CR4,
    CS,
    DS,
    EFLAGS,
    EIP,
    ES,
    FS,
    GPRS64_BY_NAME,
    GPRS_BY_NAME,
    GS,
    RFLAGS,
    RIP,
    SS,
    Cpu,
)

# What `--json` shows of the CPU at the stop: the registers a fault's diagnosis needs,
# by the CPU's width.
SYSTEM_REGISTERS = {"cs": CS, "ds": DS, "es": ES, "fs": FS, "gs": GS, "ss": SS,
                    "cr0": CR0, "cr2": CR2, "cr3": CR3, "cr4": CR4}
STOP_REGISTERS = {32: {**GPRS_BY_NAME, "eip": EIP, "eflags": EFLAGS, **SYSTEM_REGISTERS},
                  64: {**GPRS64_BY_NAME, "rip": RIP, "rflags": RFLAGS, **SYSTEM_REGISTERS}}


class StopKind(Enum):
    GUEST_EXIT = "guest-exit"  # isa-debug-exit: the guest chose its exit code
    SHUTDOWN = "shutdown"  # SCHEDOP_shutdown (poweroff, reboot...)
    CRASH = "crash"  # the hypervisor crashed the domain (Xen's domain_crash)
    TRIPLE_FAULT = "triple-fault"  # a real PC would reset
    RESET = "reset"  # the guest reset the PC (port 0x92, 0xCF9, the 8042): QEMU's
    # -no-reboot ends the run there, with status 0
    HALTED = "halted"  # hlt (or SCHEDOP_block) with nothing left that could wake it
    INSN_LIMIT = "insn-limit"  # --max-insns
    TIMEOUT = "timeout"  # --timeout
    EMULATOR_ERROR = "emulator-error"  # Unicorn refused to go on (unmapped fetch...)
    NOT_MODELED = "not-modeled"  # the guest needs what pvtool does not model (Departures)


@dataclass(frozen=True)
class Stop:
    kind: StopKind
    reason: str
    ip: int = 0  # the instruction pointer: EIP, or RIP on a 64-bit guest
    code: int | None = None  # the guest's exit code, for GUEST_EXIT and SHUTDOWN
    symbol: str = ""  # where ip is in the image, `name+0x12`, when it has symbols
    # The page fault's address, or the page-table entry's frame, a crash came from.
    fault_address: int | None = None

    @property
    def guest_chose(self) -> bool:
        """True when the guest ended the run on purpose."""
        return self.kind in (StopKind.GUEST_EXIT, StopKind.SHUTDOWN, StopKind.RESET)

    def describe(self) -> str:
        """The run's last line. It says `at eip` on both widths, as the `--json` key
        `eip` stays beside `ip`: what scripts and docs/ABI.md already match."""
        where = f" at eip {self.ip:#010x}" if not self.guest_chose else ""
        if where and self.symbol:
            where += f" <{self.symbol}>"
        return f"{self.kind.value}: {self.reason}{where}"


def registers_at_stop(cpu: Cpu) -> dict[str, int]:
    """The CPU's registers by name, and its CPL, as the run left them."""
    values = {name: cpu.read(reg) for name, reg in STOP_REGISTERS[cpu.bits].items()}
    values["cpl"] = cpu.cpl
    return values
