"""guests64's minikern64 through `pvtool patch` (xen64): every privileged or sensitive
instruction objdump finds in its 64-bit code is a site of the report, each placed, the
32-bit Multiboot stub left alone, and the image verified and written.

The patched kernel cannot boot under PV in this wave (the 64-bit hypervisor is being
written beside it); tests/patch/test_glue64.py runs the glue's pieces on Unicorn.
"""

import json
import re

import pytest

from tests.cli import pvtool
from tests.oracles import guest_path
from tests.patch.tools import objdump, read_virtual, sections

# What objdump -M intel prints for the catalogue's 64-bit instructions (x86/catalogue.py
# is not read: this list is the oracle's own).
PRIVILEGED = re.compile(
    r"^(cli|sti|hlt|pushf[qw]?|popf[qw]?|iretq?|swapgs|wrmsr|rdmsr|lgdt|lidt|lldt|ltr|"
    r"sgdt|sidt|sldt|str|smsw|lmsw|clts|invlpg|invd|wbinvd|in|out|ins[bwd]?|outs[bwd]?|"
    r"sysretq?|sysexitq?|[rw][fg]sbase|xsetbv|invpcid|lar|lsl|verr|verw)$")
SPECIAL = re.compile(r"\b(cr[0-8]|dr[0-7])\b|^(cs|ss)\b|,\s*(cs|ss)$")
# The classes pvtool's hypervisor emulates at a trap site (docs/ABI.md).
TRAP_CLASSES = {"cli", "sti", "hlt", "iret", "sysret", "sysexit", "mov_to_dr",
                "mov_from_dr", "invlpg", "pushf", "wrmsr", "rdmsr"}


@pytest.fixture(scope="module")
def patched(tmp_path_factory):
    out = tmp_path_factory.mktemp("minikern64") / "minikern64.pv.elf"
    result = pvtool("patch", guest_path("minikern64"), "-o", out)
    assert result.status == 0, result.stderr
    return out, json.loads(out.with_suffix(".json").read_text())


def oracle_sites(elf) -> set[int]:
    """Addresses of the catalogue's instructions in the 64-bit code, by objdump."""
    found = set()
    for name in (".text", ".utext"):
        for line in objdump(elf, section=name):
            mnemonic, operands = line.mnemonic, line.operands
            if mnemonic in ("rep", "repz", "repnz"):  # objdump prints the prefix apart
                mnemonic, _, operands = operands.partition(" ")
            if PRIVILEGED.match(mnemonic) or (mnemonic == "mov" and SPECIAL.search(operands)):
                found.add(line.address)
    return found


def test_every_site_objdump_sees_is_in_the_report(patched):
    out, report = patched
    reported = {int(site["address"], 16) for site in report["sites"]}
    assert oracle_sites(guest_path("minikern64")) == reported
    assert len(reported) > 150


def test_every_site_is_placed_and_the_counts_add_up(patched):
    _, report = patched
    placements = [site["placement"] for site in report["sites"]]
    assert set(placements) <= {"in-place", "detour", "trap", "kept"}
    assert report["placements"] == {p: placements.count(p) for p in set(placements)}
    kept = {site["class"] for site in report["sites"] if site["placement"] == "kept"}
    assert kept <= {"in", "out", "ins", "outs", "lar", "lsl", "verr", "verw"}
    traps = [site for site in report["sites"] if site["placement"] == "trap"]
    assert {site["class"] for site in traps} <= TRAP_CLASSES
    assert len(traps) <= 5  # windows cut by branch targets (spin loops, trapret)
    assert report["verified"]


def test_the_multiboot_stub_is_untouched_and_the_image_grows_after_the_kernel(patched):
    out, _ = patched
    original = guest_path("minikern64")
    boot = sections(original)[".boot32"]
    assert read_virtual(out, boot.address, boot.size) == \
        read_virtual(original, boot.address, boot.size)
    added = sections(out)
    last = max(s.address + s.size for s in sections(original).values() if s.address)
    assert last <= added[".pvdata"].address < added[".pvtext"].address
    assert added[".pvtext"].address - sections(original)[".text"].address < 1 << 31
