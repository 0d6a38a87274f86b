"""The least a null hypercall can cost in pvtool's machine: `int 0x80` in a loop (the
empty-hook probe's loop), hooked as the machine hooks `int 0x82` (a ctypes callback
straight to Unicorn, machine/pc.py's _add_raw_hook), the hook doing only what every
hypercall must, the way VCpu does it: read CS, the number and five arguments in one
unpack of the CPU's state and write the result into EAX (machine/cpu.py's reader and
writer, machine/cpu_state.py). Everything a real hypercall costs above
this is pvtool's own Python: dispatch, the handler, the checks on return."""

from unicorn import UC_HOOK_INTR
from unicorn.unicorn_py3.unicorn import HOOK_INTR_CFUNC

from pvtool.bench.bare import bare_cpu, load_code
from pvtool.bench.emptyhook import CODE_BASE, HookResult, loop_code
from pvtool.bench.measure import time_runs
from pvtool.interrupts import emulate
from pvtool.machine.cpu import CS, EAX, EBX, ECX, EDI, EDX, ESI, Cpu

REGISTERS = (CS, EAX, EBX, ECX, EDX, ESI, EDI)  # a 32-bit hypercall's, abi/xen.py


def run_hypercall_floor(calls: int, repeat: int) -> HookResult:
    code = loop_code(calls)
    uc = bare_cpu()
    load_code(uc, CODE_BASE, code)
    cpu = Cpu(uc)
    registers = cpu.reader(REGISTERS)
    set_result = cpu.writer(EAX)

    def least_hypercall(handle: int, vector: int, _) -> None:
        set_result(registers()[1])  # the result, as dispatch writes it

    callback = HOOK_INTR_CFUNC(least_hypercall)
    uc._Uc__do_hook_add(UC_HOOK_INTR, callback, 1, 0)
    end = CODE_BASE + len(code)

    def once() -> None:
        emulate(uc, CODE_BASE, end)

    once()
    timing = time_runs(once, repeat)
    return HookResult(calls, timing, cpu.read(ECX))
