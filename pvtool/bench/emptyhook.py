"""What one Unicorn exit into Python costs at the least, in each width, on the
instruction a hypercall of that width leaves the guest by: `int 0x80` in a loop on a
bare 32-bit CPU, caught by a UC_HOOK_INTR whose callback does nothing (a 32-bit PV
kernel's hypercalls are `int 0x82`), and `syscall` in a loop on a bare 64-bit CPU,
caught by an empty UC_HOOK_INSN SYSCALL hook (a 64-bit PV kernel's are the hypercall
page's `syscall`, hv/entry64.py). Both are added through the binding's hook_add, the
same way. `int n` arrives with EIP after the instruction, and Unicorn adds
`syscall`'s length to RIP after its hook and touches no register (UNICORN.md), so
returning from either hook resumes the loop and ECX counts on."""

from dataclasses import dataclass

from unicorn import UC_HOOK_INSN, UC_HOOK_INTR
from unicorn import x86_const as X

from pvtool.bench.bare import bare_cpu, load_code
from pvtool.bench.measure import Timing, time_runs
from pvtool.interrupts import emulate
from pvtool.x86.isa import assemble

CODE_BASE = 0x1000
LOOP = """
    mov ecx, {calls}
again:
    {exit}
    dec ecx
    jnz again
"""
EXIT_INSTRUCTION = {32: "int 0x80", 64: "syscall"}


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


def _empty_intr_hook(uc, vector, user_data) -> None:
    pass


def _empty_syscall_hook(uc, user_data) -> None:
    pass


def loop_code(calls: int, bits: int = 32) -> bytes:
    """CALLS exits by the BITS-bit hypercall's instruction, in a loop at CODE_BASE."""
    return assemble(LOOP.format(calls=calls, exit=EXIT_INSTRUCTION[bits]), CODE_BASE, bits)


def run_empty_hook(calls: int, repeat: int, bits: int = 32) -> HookResult:
    code = loop_code(calls, bits)
    uc = bare_cpu(bits)
    load_code(uc, CODE_BASE, code)
    if bits == 64:
        uc.hook_add(UC_HOOK_INSN, _empty_syscall_hook, None, 1, 0, X.UC_X86_INS_SYSCALL)
    else:
        uc.hook_add(UC_HOOK_INTR, _empty_intr_hook)
    end = CODE_BASE + len(code)

    def once() -> None:
        emulate(uc, CODE_BASE, end)

    once()
    timing = time_runs(once, repeat)
    return HookResult(calls, timing, uc.reg_read(X.UC_X86_REG_ECX))
