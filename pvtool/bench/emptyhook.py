"""What one Unicorn exit into Python costs at the least: `int 0x80` in a loop on a bare
CPU, caught by a UC_HOOK_INTR whose callback does nothing. `int n` arrives with EIP
after the instruction (UNICORN.md), so returning from the hook resumes the loop."""

from dataclasses import dataclass

from unicorn import UC_HOOK_INTR
from unicorn import x86_const as X

from pvtool.bench.bare import bare_cpu, load_code
from pvtool.bench.measure import Timing, time_runs
from pvtool.interrupts import emulate
from pvtool.x86.isa import assemble

CODE_BASE = 0x1000
LOOP = """
    mov ecx, {calls}
again:
    int 0x80
    dec ecx
    jnz again
"""


@dataclass(frozen=True)
class HookResult:
    calls: int
    timing: Timing
    final_ecx: int  # 0 when every iteration ran; without the hook emu_start raises

    @property
    def seconds_per_call(self) -> float:
        return self.timing.median / self.calls

    def to_dict(self) -> dict:
        return {"calls": self.calls, "seconds": self.timing.to_dict(),
                "seconds_per_call": self.seconds_per_call, "final_ecx": self.final_ecx}


def _empty_hook(uc, vector, user_data) -> None:
    pass


def run_empty_hook(calls: int, repeat: int) -> HookResult:
    code = assemble(LOOP.format(calls=calls), CODE_BASE, 32)
    uc = bare_cpu()
    load_code(uc, CODE_BASE, code)
    uc.hook_add(UC_HOOK_INTR, _empty_hook)
    end = CODE_BASE + len(code)

    def once() -> None:
        emulate(uc, CODE_BASE, end)

    once()
    timing = time_runs(once, repeat)
    return HookResult(calls, timing, uc.reg_read(X.UC_X86_REG_ECX))
