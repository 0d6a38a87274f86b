"""guests/biggdt: a GDT of 2,064 descriptors (the size a public suite's CPU test
kernels load) with its code, data, window and TSS selectors far up in it. QEMU is the
oracle for the bytes; pvtool's native PC, the patched kernel under PV (whose glue gives
Xen's set_gdt a shadow of up to 14 frames) and the unpatched one under trap-and-emulate
must print them and exit as it does."""

import pytest

from tests import cli
from tests.oracles import guest_path, run_qemu

EXPECTED = (b"biggdt: lgdt of 2064 descriptors (limit 407f)\n"
            b"biggdt: code 4010, data 4018, tss 4070 loaded\n"
            b"biggdt: through fs = 4060: \"the bytes at the window segment's base\" ok\n"
            b"biggdt: all 2 checks passed\n")


@pytest.fixture(scope="module")
def biggdt():
    return guest_path("biggdt")


@pytest.fixture(scope="module")
def native(biggdt):
    return cli.pvtool("run", "--native", "--quiet", biggdt)


def test_biggdt_on_qemu_prints_its_selectors_and_passes(biggdt):
    on_qemu = run_qemu(biggdt)
    assert on_qemu.stdout == EXPECTED
    assert on_qemu.guest_code == 0


def test_native_prints_qemus_bytes(native):
    assert native.stdout_bytes == EXPECTED
    assert native.status == 0


def test_patched_under_pv_prints_natives_bytes(biggdt, native, tmp_path):
    patched = tmp_path / "biggdt.pv.elf"
    assert cli.pvtool("patch", biggdt, "-o", patched).status == 0

    done = cli.pvtool("run", "--quiet", patched)

    assert (done.stdout_bytes, done.status) == (native.stdout_bytes, native.status)


def test_under_trap_and_emulate_prints_natives_bytes(biggdt, native):
    done = cli.pvtool("run", "--trap", "--quiet", biggdt)

    assert (done.stdout_bytes, done.status) == (native.stdout_bytes, native.status)
