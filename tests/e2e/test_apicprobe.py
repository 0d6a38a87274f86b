"""apicprobe on QEMU and on pvtool's native machine: the local APIC's and the I/O APIC's
registers as SeaBIOS leaves them and as writes change them, IPIs to itself, priorities,
NMI blocking, the APIC timer, I/O APIC routes and the 8259's virtual wire, printed by
the guest; pvtool must print QEMU's bytes and exit as QEMU does."""

from functools import partial

import pytest

from tests import cli
from tests.oracles import QemuResult, guest_path, run_qemu

pvtool_run = partial(cli.pvtool, "run", process=True, timeout=300)


@pytest.fixture(scope="module")
def judge() -> QemuResult:
    return run_qemu(guest_path("apicprobe"), timeout=120)


def test_apicprobe_runs_to_the_end_on_qemu(judge):
    assert judge.guest_code == 0
    assert judge.stdout.endswith(b"apicprobe: done\n")
    # What the guest found must be what the probe is there to show.
    for line in (b"held until its iret: yes, then taken: yes",
                 b"taken in the order 71 53 52",
                 b"the PIT arrives on input 2 (vector 0x30): yes; input 0 took 0"):
        assert line in judge.stdout


def test_native_apicprobe_prints_qemus_bytes_and_exits_with_qemus_code(judge):
    done = pvtool_run("--native", "--quiet", str(guest_path("apicprobe")))

    assert done.stdout_bytes == judge.stdout
    assert done.status == judge.guest_code
