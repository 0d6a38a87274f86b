"""A 64-bit Xen guest through `pvtool run`: an ELF64 image with Xen notes boots as a
64-bit PV domain (it was refused before), and one without them is still refused."""

import json
from functools import partial

from tests import cli
from tests.hv.xenguest64 import PERDOMAIN_START

GUEST_LIMIT_STATUS = 78  # README, "Exit status": --max-insns
GUEST_FAULT_STATUS = 71  # the domain crashed
UNSUPPORTED_STATUS = 69

pvtool = partial(cli.pvtool, installed=True, timeout=60)

SPIN = """
    mov rax, 0x64
spin:
    jmp spin
"""


def test_a_64_bit_xen_guest_boots_and_runs_at_cpl_3_until_the_limit(build64, tmp_path):
    guest = build64(SPIN)
    done = pvtool("run", "--quiet", "--max-insns", "5000", "--json", tmp_path / "run.json",
                  str(guest.path))
    assert done.status == GUEST_LIMIT_STATUS, done.stderr
    summary = json.loads((tmp_path / "run.json").read_text())
    registers = summary["registers"]
    assert summary["mode"] == "pv"
    assert registers["cpl"] == 3
    assert registers["rip"] == guest["spin"]
    assert registers["rax"] == 0x64
    assert registers["cs"] == 0xE033


def test_a_64_bit_guest_reaching_xens_private_area_crashes_with_one_line(build64):
    guest = build64(f"""
    mov rbx, {PERDOMAIN_START:#x}
    mov byte ptr [rbx], 1
""")
    done = pvtool("run", "--quiet", str(guest.path))
    assert done.status == GUEST_FAULT_STATUS
    assert len(done.stderr.splitlines()) == 1
    assert f"{PERDOMAIN_START:#x}" in done.stderr


def test_a_64_bit_elf_without_xen_notes_is_still_refused(build64, tmp_path):
    guest = build64(SPIN, notes=())
    done = pvtool("run", str(guest.path))
    assert done.status == UNSUPPORTED_STATUS
    assert "64-bit" in done.stderr
