"""minikern-xen, minikern ported to Xen's 32-bit PV ABI by hand (patches/minikern-xen/,
issue 14 point 2): under `pvtool run` it prints native minikern's bytes, QEMU's
included, without a disk, does no port I/O at all, and reaches the hypervisor through
the hypercalls a hand port makes instead of privileged instructions.

The hypercall figures are bounds that follow from what minikern's programs do (mapper's
64 map and unmap cycles, four processes each with an address space of its own, a line
of console output per notification), not counts read off a run.
"""

import json
import re
from functools import partial

import pytest

from tests import cli
from tests.binutils import run_tool
from tests.binutils import symbols as nm_symbols
from tests.e2e.test_minikern_qemu import NO_DISK_LINE, expected_output
from tests.oracles import REPO_ROOT, guest_path

pvtool = partial(cli.pvtool, process=True, timeout=240)

PATCHES = REPO_ROOT / "patches" / "minikern-xen"
MAPPER_CYCLES = 64  # umapper.c: map, fill, check and unmap one page, 64 times
PROCESSES = 4       # main.c's programs: primes, chatty, mapper, intruder
SELFTESTS = (
    b"selftest: after cli, pushf shows IF clear ok\n",
    b"selftest: popf restores IF, set and clear ok\n",
    b"selftest: sgdt returns what lgdt loaded ok\n",
    b"selftest: sidt returns what lidt loaded ok\n",
)


@pytest.fixture(scope="module")
def xen_run(tmp_path_factory):
    summary = tmp_path_factory.mktemp("minikern-xen") / "run.json"
    done = pvtool("run", "--json", summary, guest_path("minikern-xen"))
    assert done.status == 0, done.stderr
    return done.stdout_bytes, json.loads(summary.read_text())


def test_it_prints_native_minikerns_bytes_without_a_disk(xen_run):
    stdout, _ = xen_run
    native = pvtool("run", "--native", "--quiet", guest_path("minikern"))
    assert native.status == 0
    assert stdout == native.stdout_bytes == expected_output(NO_DISK_LINE)


def test_its_self_tests_pass(xen_run):
    stdout, summary = xen_run
    for line in SELFTESTS:
        assert line in stdout
    assert stdout.endswith(b"minikern: all 21 checks passed\n")
    assert summary["stop"]["reason"] == "shutdown (poweroff)"


def test_it_does_no_port_io(xen_run):
    _, summary = xen_run
    assert summary["exits"].get("io", 0) == 0
    assert summary["uart_bytes"] == 0
    assert summary["sensitive"] == []


def test_its_hypercalls_are_a_hand_ports(xen_run):
    stdout, summary = xen_run
    calls = summary["hypercalls"]
    # One GDT, one trap table (the IDT converted), one pair of callbacks.
    assert calls["set_gdt"] == calls["set_trap_table"] == calls["set_callbacks"] == 1
    # Every map and unmap is an mmu_update into a pinned table.
    assert calls["mmu_update"] >= 2 * MAPPER_CYCLES
    # An invlpg per unmap, a pin and an unpin per process, a NEW_BASEPTR per switch.
    assert calls["mmuext_op"] >= MAPPER_CYCLES + 2 * PROCESSES + 2 * PROCESSES
    assert calls["stack_switch"] >= PROCESSES
    # VIRQ_TIMER bound and unmasked, and the console ring notified line by line.
    assert calls["event_channel_op"] >= 2 + stdout.count(b"\n")
    # The clock ticked (main waits for three ticks) through the event upcall.
    assert calls["set_timer_op"] >= 3
    assert summary["exits"]["upcall"] >= 3
    assert calls["iret"] >= summary["exits"]["upcall"]


def xen_notes(elf) -> dict[int, bytes]:
    """The "Xen" ELF notes as GNU readelf shows them: type -> description bytes."""
    text = run_tool("readelf", "-n", elf).stdout
    found = re.findall(r"^\s+Xen\s+0x[0-9a-f]+\s+(.*)\n\s+description data: ([0-9a-f ]*)$",
                       text, re.M)
    notes = {}
    for kind, data in found:
        number = re.search(r"0x([0-9a-f]+)\)", kind)
        key = int(number.group(1), 16) if number else NAMED_NOTES[kind.split()[0]]
        notes[key] = bytes.fromhex(data)
    return notes


# readelf names two of Xen's note types after the generic notes that share them.
NAMED_NOTES = {"NT_VERSION": 1, "NT_ARCH": 2}
GUEST_OS, ENTRY, HYPERCALL_PAGE, VIRT_BASE, PAE_MODE = 6, 1, 2, 3, 9


def test_it_is_a_2_level_xen_kernel_without_a_multiboot_header():
    elf = guest_path("minikern-xen")
    notes, symbols = xen_notes(elf), nm_symbols(elf)
    assert notes[GUEST_OS] == b"minikern\0"
    assert int.from_bytes(notes[ENTRY], "little") == symbols["_start"]
    assert int.from_bytes(notes[HYPERCALL_PAGE], "little") == symbols["hypercall_page"]
    assert notes[VIRT_BASE] == bytes(4)
    assert PAE_MODE not in notes  # minikern's page tables are 2-level
    assert ".multiboot" not in run_tool("readelf", "-S", elf).stdout


# Table 2's categories for the port: its new files are Xen-specific, its changes to
# minikern's own files architecture-independent.
CATEGORIES = ("--category", "hypervisor=xen/*", "--category", "arch=*")
CATEGORY_OF = {"xen.diff": "hypervisor-specific non-driver",
               "arch.diff": "architecture-independent"}


@pytest.mark.parametrize("name", sorted(CATEGORY_OF))
def test_diffstat_measures_the_port_by_category(name):
    """Every '+' line of the diff (counted here) is a line modified or added, all of
    it in the diff's category."""
    diff = PATCHES / name
    added = len(re.findall(r"^\+(?!\+\+ )", diff.read_text(), re.M))
    done = pvtool("diffstat", diff, "--baseline", REPO_ROOT / "guests", *CATEGORIES, "--json", "-")
    assert done.status == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["lines_modified_or_added"] == added > 0
    totals = {row["name"]: row["hand_written"] for row in figures["categories"]}
    assert totals[CATEGORY_OF[name]] == added
