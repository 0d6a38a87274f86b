"""minikern given less RAM than it needs (`--memory 4`; it asks for 8 MiB): natively
it prints its own failure, as on QEMU (tests/e2e/test_minikern_qemu.py); a domain it
runs in crashes on its first touch past the RAM, and pvtool's line says the RAM was too
small, not only where the page fault was."""

import pytest

from pvtool.machine.stop import StopKind
from tests import cli
from tests.e2e.patched import patched_once
from tests.oracles import guest_path

PAST_RAM = "0x400000 is past the 4 MiB of RAM --memory gives"


@pytest.mark.parametrize(("mode", "fault"), [
    ("pv", "#PF at 0x400000"),  # no handler yet: its trap table comes later
    ("trap", "#PF(0x2, cr2 0x400000)"),  # its IDT is not loaded yet: a triple fault
])
def test_a_domain_that_faults_past_its_ram_says_the_ram_is_too_small(mode, fault):
    image = patched_once("minikern") if mode == "pv" else guest_path("minikern")
    flags = ("--trap",) if mode == "trap" else ()
    done = cli.pvtool("run", *flags, "--quiet", "--memory", "4", image, process=True)
    line = done.error_line()
    assert done.status == 71, done.output
    assert line.startswith(f"{cli.ERROR_PREFIX}{StopKind.CRASH.value}: ")
    assert fault in line and f"({PAST_RAM})" in line
