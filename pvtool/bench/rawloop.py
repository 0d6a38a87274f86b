"""Unicorn's best case: a register-only loop on a bare CPU with no hooks."""

from dataclasses import dataclass

from unicorn import x86_const as X

from pvtool.bench.bare import bare_cpu, load_code
from pvtool.bench.measure import Timing, per_second, time_runs
from pvtool.interrupts import emulate
from pvtool.x86.isa import assemble

CODE_BASE = 0x1000
LOOP = """
    mov ecx, {iterations}
    xor eax, eax
again:
    add eax, ecx
    dec ecx
    jnz again
"""
INSNS_PER_ITERATION = 3
SETUP_INSNS = 2


@dataclass(frozen=True)
class LoopResult:
    iterations: int
    insns: int
    timing: Timing
    final_ecx: int  # 0 when the loop ran out
    final_eax: int  # the sum 1 + ... + iterations, mod 2**32: every iteration ran

    @property
    def insns_per_second(self) -> float:
        return per_second(self.insns, self.timing.median)

    def to_dict(self) -> dict:
        return {"iterations": self.iterations, "insns": self.insns,
                "seconds": self.timing.to_dict(),
                "insns_per_second": round(self.insns_per_second),
                "final_ecx": self.final_ecx, "final_eax": self.final_eax}


def run_register_loop(iterations: int, repeat: int) -> LoopResult:
    code = assemble(LOOP.format(iterations=iterations), CODE_BASE, 32)
    uc = bare_cpu()
    load_code(uc, CODE_BASE, code)
    end = CODE_BASE + len(code)

    def once() -> None:
        emulate(uc, CODE_BASE, end)

    once()  # translate the blocks first: the figure is steady-state speed
    timing = time_runs(once, repeat)
    return LoopResult(iterations, SETUP_INSNS + INSNS_PER_ITERATION * iterations, timing,
                      uc.reg_read(X.UC_X86_REG_ECX), uc.reg_read(X.UC_X86_REG_EAX))
