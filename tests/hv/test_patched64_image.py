"""What the 64-bit domain builder and the hypervisor read from a patched 64-bit kernel
(minikern64 through `pvtool patch`): the segments loaded at their p_paddr as Xen's
libelf loads them, the 32-bit Multiboot stub included, and pvtool's notes in their
64-bit form. The expected values come from the patcher's JSON report and the
unpatched image's bytes, not from the code under test."""

import json

import pytest

from pvtool.image.elf import load_elf
from pvtool.image.pvtool_notes import parse_pvtool_notes
from tests.e2e.patched import patch_guest
from tests.hv.harness import boot
from tests.hv.xenguest import Guest
from tests.oracles import guest_path
from tests.patch.tools import read_virtual, sections

VIRT_BASE = 0xFFFF_FFFF_8000_0000
RAM = 32 << 20
ENCODING = {"hlt": b"\xf4", "cli": b"\xfa", "iretq": b"\x48\xcf"}  # SDM Vol. 2 opcodes


@pytest.fixture(scope="module")
def patched(tmp_path_factory):
    """The patched image and its JSON report."""
    out = patch_guest("minikern64", tmp_path_factory.mktemp("minikern64-pv"))
    return out, json.loads(out.with_suffix(".json").read_text())


def test_the_notes_are_read_in_their_64_bit_form(patched):
    out, report = patched
    notes = parse_pvtool_notes(load_elf(out))
    original = guest_path("minikern64")
    trap_sites = {int(site["address"], 16): ENCODING[site["instruction"]]
                  for site in report["sites"] if site["placement"] == "trap"}
    assert len(trap_sites) == 4  # hlt, cli; hlt, iretq: cut by branch targets
    assert notes.trap_sites == trap_sites
    for address, data in trap_sites.items():
        assert read_virtual(original, address, len(data)) == data
    assert notes.regs_block == sections(out)[".pvdata"].address
    assert {site for _, _, site in notes.site_ranges} >= {
        int(site["address"], 16) for site in report["sites"]
        if site["placement"] in ("in-place", "detour") and site["class"] == "lgdt"}


def test_every_segment_lands_at_its_physical_address_the_stub_included(patched):
    out, _ = patched
    booted = boot(Guest(out, {}), ram=RAM)
    original = guest_path("minikern64")
    for name in (".multiboot", ".boot32", ".text", ".pvtext"):
        section = sections(out)[name]
        physical = section.address - (0 if section.address < VIRT_BASE else VIRT_BASE)
        assert booted.memory.read_phys(physical, section.size) == \
            read_virtual(out, section.address, section.size), name
    stub = sections(original)[".boot32"]
    assert stub.address == 0x100020  # linked (and loaded) at 1 MiB, beside the header
