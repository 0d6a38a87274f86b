"""pitprobe on QEMU and on pvtool's native PC: the same serial bytes and exit status
(issue 11: the 8254 as QEMU 7.2 presents it, with the state SeaBIOS leaves; every mode
on channels 0 and 2, channel 2's gate and OUT through port 0x61, latches and
read-back, the access modes and their flip-flop, BCD, counts of 0)."""

from functools import partial

from tests import cli
from tests.oracles import guest_path, run_qemu

pvtool = partial(cli.pvtool, process=True, timeout=300)


def test_pitprobe_prints_what_qemu_prints():
    qemu = run_qemu(guest_path("pitprobe"), timeout=120)
    done = pvtool("run", "--native", "--quiet", str(guest_path("pitprobe")))
    assert b"pitprobe: done\n" in qemu.stdout
    assert done.stdout_bytes == qemu.stdout
    assert done.status == qemu.guest_code == 0
