"""portscan on QEMU and on pvtool's native PC: every port of the ISA range and of the
ranges QEMU's i440FX PC decodes above it, read at byte, word and dword width, the
floppy controller's detection sequence, the PS/2 mouse's commands and the Bochs VBE
registers print the same bytes, and the run ends with the same status (issue 11).

The ports where pvtool is known to depart from QEMU print as "--" in this run (the
guest's scan.c names each, and each is in a module's Departures paragraph); the last
test reads them too, and checks that every line that differs is one of those and that
some do differ, so that the list stays true."""

from functools import partial

import pytest

from tests import cli
from tests.oracles import guest_path, run_qemu

pvtool = partial(cli.pvtool, process=True, timeout=300)
DONE = b"portscan: done\n"


@pytest.fixture(scope="module")
def qemu():
    return run_qemu(guest_path("portscan"), timeout=120)


def test_portscan_prints_what_qemu_prints(qemu):
    done = pvtool("run", "--native", "--quiet", str(guest_path("portscan")))
    assert DONE in qemu.stdout
    assert done.stdout_bytes == qemu.stdout
    assert done.status == qemu.guest_code == 0


def test_the_scan_covers_each_width_and_the_probes_of_every_device(qemu):
    lines = qemu.stdout.split(b"\n")
    for width in b"bwd":
        assert sum(line.startswith(bytes([width, 0x20])) for line in lines) >= 64 + 9
    for probe in (b"fdc version: msr d0 90", b"mouse get id: fa/3d 3/3d", b"vbe: b0c5"):
        assert any(line.startswith(probe) for line in lines), probe


def scan_lines(output: bytes) -> dict[bytes, bytes]:
    return {line[:6]: line for line in output.split(b"\n") if line[:2] in (b"b ", b"w ", b"d ")}


def test_the_departures_it_hides_do_differ_from_qemu(qemu):
    qemu_all = run_qemu(guest_path("portscan"), timeout=120, extra_args=("-append", "all"))
    done = pvtool("run", "--native", "--quiet", "--cmdline", "all", str(guest_path("portscan")))
    ours, theirs = scan_lines(done.stdout_bytes), scan_lines(qemu_all.stdout)
    hidden = {key for key, line in scan_lines(qemu.stdout).items() if b"-" in line}
    differing = {key for key in theirs if ours[key] != theirs[key]}
    assert differing
    assert differing <= hidden
