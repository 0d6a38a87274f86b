"""The probe guests on the x86_64 PC (`pvtool run --native --pc x86_64`) beside
qemu-system-x86_64: every CPUID leaf pcprobe reads (qemu64's), the MP table's and
SMBIOS's processor (its signature and features), the memory map with the range an AMD
CPU's PC reserves (probeboot's Multiboot map, probecfg's etc/e820), and the rest of
the PC, which is the i386 PC's: the same bytes and exit status (probecfg: but for the
DSDT's digest, as on the i386 PC, tests/e2e/test_probecfg.py)."""

from functools import partial

import pytest

from tests import cli
from tests.e2e.test_pcprobe import disk_options, make_disks
from tests.e2e.test_probecfg import without_dsdt_digest
from tests.oracles import QEMU64, guest_path, run_qemu

pvtool = partial(cli.pvtool, "run", "--native", "--quiet", "--pc", "x86_64", process=True,
                 timeout=180)


@pytest.mark.parametrize("guest", ["probefw", "probeboot", "pcprobe"])
def test_a_probe_prints_what_qemu_system_x86_64_prints(tmp_path, guest):
    elf = guest_path(guest)
    qemu_disks = make_disks(tmp_path / "qemu", 1)
    judge = run_qemu(elf, disks=qemu_disks, timeout=120, qemu=QEMU64)
    done = pvtool(*disk_options(make_disks(tmp_path / "pvtool", 1)), elf)
    assert done.stdout_bytes == judge.stdout
    assert done.status == judge.guest_code == 0


def test_probecfg_finds_qemu_system_x86_64s_fw_cfg():
    elf = guest_path("probecfg")
    judge = run_qemu(elf, timeout=60, qemu=QEMU64)
    done = pvtool(elf)
    assert without_dsdt_digest(done.stdout_bytes) == without_dsdt_digest(judge.stdout)
    assert b"etc/e820: 28 bytes" in done.stdout_bytes  # the HyperTransport hole, then RAM
    assert done.status == judge.guest_code == 0


def test_probeboot_maps_the_hypertransport_hole_as_reserved():
    done = pvtool(guest_path("probeboot"))
    assert (b"mmap size=00000014 base=000000fd00000000 length=0000000300000000 "
            b"type=00000002\n") in done.stdout_bytes


def test_pcprobe_sees_an_amd_cpu_with_long_mode(tmp_path):
    done = pvtool(guest_path("pcprobe"))
    assert b"cpuid 0.0: d 68747541 444d4163 69746e65\n" in done.stdout_bytes  # AuthenticAMD
    assert b"cpuid 80000001.0: 60fb1 0 5 2193fbfd\n" in done.stdout_bytes  # LM, NX, SYSCALL
