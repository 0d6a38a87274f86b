"""guests64's minikern64 through `pvtool patch` (xen64): every privileged or sensitive
instruction objdump finds in its 64-bit code is a site of the report, each placed, the
32-bit Multiboot stub left alone, and the image verified and written.

The patched kernel cannot boot under PV in this wave (the 64-bit hypervisor is being
written beside it); tests/patch/test_glue64.py runs the glue's pieces on Unicorn.
"""

import json
import re
import struct

import pytest
from elftools.elf.elffile import ELFFile

from tests.cli import pvtool
from tests.oracles import guest_path
from tests.patch.glue64 import KERNBASE, STACK_TOP, GlueMachine
from tests.patch.tools import note, objdump, read_virtual, sections

# What objdump -M intel prints for the catalogue's 64-bit instructions (x86/catalogue.py
# is not read: this list is the oracle's own).
PRIVILEGED = re.compile(
    r"^(cli|sti|hlt|pushf[qw]?|popf[qw]?|iretq?|swapgs|wrmsr|rdmsr|lgdt|lidt|lldt|ltr|"
    r"sgdt|sidt|sldt|str|smsw|lmsw|clts|invlpg|invd|wbinvd|in|out|ins[bwd]?|outs[bwd]?|"
    r"sysretq?|sysexitq?|[rw][fg]sbase|xsetbv|invpcid|lar|lsl|verr|verw|retfq)$")
SPECIAL = re.compile(r"\b(cr[0-8]|dr[0-7])\b|^(cs|ss)\b|,\s*(cs|ss)$")
# The classes pvtool's hypervisor emulates at a trap site (docs/ABI.md).
TRAP_CLASSES = {"cli", "sti", "hlt", "iret", "retfq", "mov_to_dr", "mov_from_dr"}


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


def test_the_pv_entry_of_patched_minikern64_reaches_start64_as_multiboot(patched):
    """The glue's PV entry, run on Unicorn with Xen's hypercalls answered 0
    (tests/patch/glue64.py), hands minikern64's start64 the Multiboot magic and an
    information structure, as its contract asks (guests64's lib64/entry.S)."""
    out, _ = patched
    machine = GlueMachine(out)
    start_info, l4_pfn = KERNBASE + 0xE0_0000, 0xE01
    mfn_list = KERNBASE + 0xC0_0000
    machine.write(mfn_list, struct.pack("<8192Q", *range(8192)))
    machine.write(KERNBASE + (l4_pfn << 12) + 511 * 8, struct.pack("<Q", 0xE02067))
    info = bytearray(1168)  # start_info, 64-bit (public/xen.h)
    struct.pack_into("<32sQQ", info, 0, b"xen-3.0-x86_64", 0x2000, 0x7_0000_0000)
    struct.pack_into("<QQQ", info, 88, KERNBASE + (l4_pfn << 12), 4, mfn_list)
    machine.write(start_info, bytes(info))
    entry = struct.unpack("<Q", note(out, b"Xen", 1))[0]
    with guest_path("minikern64").open("rb") as kernel:
        start64 = ELFFile(kernel).header.e_entry
    machine.run(entry, STACK_TOP, until=start64, rsi=start_info)
    assert machine.reg("rdi") == 0x2BAD_B002
    mbi = machine.read(KERNBASE + machine.reg("rsi"), 8)
    assert struct.unpack("<II", mbi) == (0x5, 639)  # memory and command line; mem_lower
    assert machine.calls[0].number == 33  # physdev_op(set_iopl) first
