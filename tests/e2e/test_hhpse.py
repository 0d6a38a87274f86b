"""hhpse, a higher-half kernel on 4 MiB pages (guests/hhpse): linked at 0xC0100000,
entered at its physical address with paging off, it turns on paging with 4 MiB pages,
then builds 4 KiB page tables of its own, flushes a remapped page with invlpg and maps
a page from its page-fault handler. QEMU is the judge of its native run; the patched
image under PV and the original under trap-and-emulate must print the same bytes and
end with the same status (issue 12: the PV entry at both addresses, 4 MiB pages in
both modes)."""

import json
from functools import partial

import pytest

from tests import cli
from tests.e2e.patched import patch_guest
from tests.oracles import guest_path, run_qemu

pvtool = partial(cli.pvtool, process=True, timeout=120)


@pytest.fixture(scope="module")
def hhpse():
    return guest_path("hhpse")


@pytest.fixture(scope="module")
def native(hhpse):
    return pvtool("run", "--native", "--quiet", str(hhpse))


@pytest.fixture(scope="module")
def patched(tmp_path_factory):
    return patch_guest("hhpse", tmp_path_factory.mktemp("hhpse-pv"))


def test_native_hhpse_prints_qemus_bytes_and_passes_its_checks(hhpse, native):
    judge = run_qemu(hhpse, timeout=30)
    assert judge.guest_code == 0
    assert native.stdout_bytes == judge.stdout
    assert native.status == 0, native.stderr
    assert judge.stdout.startswith(b"hhpse: linked at c0100000, entered at physical ")
    assert judge.stdout.endswith(b"hhpse: all 10 checks passed\n")


def test_the_patched_hhpse_reaches_its_glue_from_its_physical_addresses(patched, tmp_path):
    """Its detours in entry.S run before paging: their jumps, linked at 0xC0...,
    land 0xC0000000 below the glue window and are moved into it (hv/traps.py)."""
    done = pvtool("run", "--json", tmp_path / "run.json", str(patched))
    assert done.status == 0, done.stderr
    assert json.loads((tmp_path / "run.json").read_text())["exits"]["glue-alias"] >= 1


@pytest.mark.parametrize("mode", ["pv", "trap"])
def test_hhpse_prints_natives_bytes_paravirtualized_and_trapped(hhpse, patched, native,
                                                                 mode):
    image = patched if mode == "pv" else hhpse
    done = pvtool("run", f"--{mode}", "--quiet", str(image))
    assert done.stdout_bytes == native.stdout_bytes
    assert done.status == native.status == 0, done.stderr
