"""What an armed breakpoint costs (docs/ABI.md, "Debug registers: how they fire"): a
loop of `inc [counter]; dec ecx; jnz` timed on the PV machine in process with nothing
armed, with an instruction or a write breakpoint armed where the loop never goes, and
with one hit on every iteration (each #DB through the guest's handler and
HYPERVISOR_iret back): 2,000,000 iterations without hits, 5,000 with. A benchmark, not
a test: `python -m tests.hv.bench_breakpoints` from the top of the checkout."""

import tempfile
import time
from pathlib import Path

from tests.hv import test_breakpoints as db
from tests.hv.harness import boot
from tests.hv.test_traps import RECORDING_BSS
from tests.hv.xenguest import guest_source, link

HANDLERS = r"""
db_handler:
    or dword ptr [esp + 8], 0x10000   /* RF: an instruction breakpoint lets it run */
    HYPERVISOR_IRET
bp_handler:
gp_handler:
    HYPERVISOR_IRET
"""
QUIET, HIT = 2_000_000, 5_000  # iterations
CASES = {
    "nothing armed": "",
    "instruction breakpoint elsewhere": db.set_debugreg(0, "offset elsewhere")
    + db.set_debugreg(7, hex(db.dr7(0))),
    "write breakpoint elsewhere": db.set_debugreg(1, "offset watched")
    + db.set_debugreg(7, hex(db.dr7(1, condition=0b01, length=0b11))),
    "instruction breakpoint hit each time": db.set_debugreg(0, "offset loop_top")
    + db.set_debugreg(7, hex(db.dr7(0))),
    "write breakpoint hit each time": db.set_debugreg(1, "offset counter")
    + db.set_debugreg(7, hex(db.dr7(1, condition=0b01, length=0b11))),
}


def loop_guest(folder: Path, arm: str, iterations: int):
    text = f"""
    mov ebx, offset trap_table
    HYPERCALL set_trap_table
{arm}
    mov ecx, {iterations}
loop_top:
    inc dword ptr [counter]
    dec ecx
    jnz loop_top
    jmp done
elsewhere:
    nop
done:
"""
    return link(folder, guest_source(text, handlers=HANDLERS, data=db.DATA, bss=RECORDING_BSS))


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    for name, arm in CASES.items():
        iterations = HIT if "hit" in name else QUIET
        booted = boot(loop_guest(folder, arm, iterations))
        started = time.perf_counter()
        while booted.machine.stop is None:
            booted.slice(1_000_000)
        elapsed = time.perf_counter() - started
        assert booted.u32("counter") == iterations
        print(f"{name:38} {elapsed / iterations * 1e6:8.2f} us an iteration")


if __name__ == "__main__":
    main()
