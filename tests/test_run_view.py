"""The summary `pvtool run` prints at 80 columns: each exit kind and count, and under
--trap each sensitive instruction that ran untrapped, its address always whole and its
text literal (an operand in brackets is not rich markup)."""

import io
from collections import Counter

from rich.console import Console

from pvtool.hv.trapmode import SensitiveUse
from pvtool.machine.stop import Stop, StopKind
from pvtool.run import Mode, RunResult
from pvtool.views.run_view import render

LONG_TEXT = "mov dword ptr [ebp + eax*4 - 0x12345678], 0x9abcdef0 ; a long operand " * 2


def test_the_trap_summary_keeps_every_address_and_instruction_at_80_columns():
    uses = [SensitiveUse(0xC1000000 + 0x10 * i, "pushf", LONG_TEXT, i + 1) for i in range(3)]
    result = RunResult(Mode.TRAP, Stop(StopKind.GUEST_EXIT, "exit", code=0), 0.5, 2, 1000,
                       exits=Counter({"emulated": 363, "io": 219}), sensitive=uses)
    out = io.StringIO()
    render(result, Console(file=out, width=80, color_system=None))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines if "ms wall" not in line) <= 80
    for use in uses:
        row = next(line for line in lines if f"{use.address:#010x}" in line)
        assert row.split("│")[3].strip() == "pushf" and row.split("│")[4].strip() == str(use.count)
    table = "".join(line.split("│")[2] for line in lines if line.count("│") == 5)
    assert "".join(table.split()) == "".join((LONG_TEXT * 3).split())
    assert "emulated" in out.getvalue() and "363" in out.getvalue()
