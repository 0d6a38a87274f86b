"""Every PC guest patched and booted paravirtualized, and booted unpatched under
trap-and-emulate, against its native run (issue 12: "every kernel the native PC boots
also boots patched, with the same bytes"). Native's bytes are QEMU's: each guest's
own e2e test holds that, with the options used here, and this one for the two guests
that have none (sieve and ioheavy, the benchmark's workloads).

A guest either prints native's bytes and exits with native's status in both modes, or
it reaches for something the mode does not give, and then the test asserts exactly
where it stops and what it shows instead:
- a PV domain's memory is its own (docs/ABI.md): no firmware tables, no MP table,
  no text screen as SeaBIOS left it; neither it nor trap-and-emulate maps the local
  APIC's page or unassigned memory;
- under trap-and-emulate the unpatched kernel runs in ring 1: the instructions that
  do not fault there (popf's IF, sgdt, sidt, moves from segment registers) show the
  hypervisor's state, x86's holes that paravirtualization exists to close;
- PV and trap-and-emulate keep the emulator's own CPUID (machine/cpuid.py).
Every guest runs from a folder of its own under the same relative name, as its own
e2e tests boot it, since some print their command line, which holds that name.
"""

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pvtool.hv.boot import boot_pv_domain
from pvtool.image.elf import load_elf
from pvtool.machine.native import boot_bare_pc
from pvtool.machine.pc import MASTER_PIC_PORT, SLAVE_PIC_PORT, Machine
from tests import cli
from tests.binutils import symbols
from tests.e2e import test_cgacon, test_highhalf, test_modcmd, test_pcprobe
from tests.e2e.patched import patched_once
from tests.e2e.test_minikern_qemu import DISK_SIZE
from tests.hv.test_trapmode import predicted
from tests.oracles import guest_path, run_qemu

MODES = ("native", "pv", "trap")
PROBECFG_MIB = 64  # test_probecfg's smaller machine


def _disks(folder: Path, paths: list[Path]) -> list[str]:
    return [option for path in paths for option in ("--disk", str(path))]


def _minikern(folder: Path) -> list[str]:
    disk = folder / "disk.img"
    disk.write_bytes(bytes(DISK_SIZE))
    return _disks(folder, [disk])


def _highhalf(folder: Path) -> list[str]:
    serial_input = folder / "input"
    serial_input.write_bytes(test_highhalf.INPUT)
    return [*_disks(folder, test_highhalf.write_disks(folder)),
            "--input", str(serial_input), "--keys", test_highhalf.TYPED]


def _modcmd(folder: Path) -> list[str]:
    options = ["--cmdline", test_modcmd.CMDLINE]
    for name, data in test_modcmd.MODULES.items():
        (folder / name).write_bytes(data)
        options += ["--module", name]
    return options


# The options each guest's own e2e test boots it with, its files written into a folder.
OPTIONS: dict[str, Callable[[Path], list[str]]] = {
    "minikern": _minikern,
    "highhalf": _highhalf,
    "modcmd": _modcmd,
    "pcprobe": lambda folder: _disks(folder, test_pcprobe.make_disks(folder)),
    "cgacon": lambda folder: ["--keys", test_cgacon.TYPED],
    "probecfg": lambda folder: ["--memory", str(PROBECFG_MIB)],
}


class Runs:
    """Each guest's runs, each mode booted once per session from a folder of its own."""

    def __init__(self, root: Path):
        self.root = root
        self.done: dict[tuple[str, str], cli.Ran] = {}

    def __call__(self, name: str, mode: str) -> cli.Ran:
        if (name, mode) not in self.done:
            self.done[name, mode] = self._run(name, mode)
        return self.done[name, mode]

    def _run(self, name: str, mode: str) -> cli.Ran:
        folder = self.root / name / mode
        folder.mkdir(parents=True)
        kernel = f"{name}.elf"
        image = patched_once(name) if mode == "pv" else guest_path(name)
        shutil.copy(image, folder / kernel)
        options = OPTIONS.get(name, lambda _: [])(folder)
        flags = {"native": ["--native"], "pv": [], "trap": ["--trap"]}[mode]
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(folder)
            return cli.pvtool("run", *flags, "--quiet", *options, kernel)


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> Runs:
    return Runs(tmp_path_factory.mktemp("matrix"))


# ---- the guests that print native's bytes in every mode ----------------------------

# portscan and pitprobe print native's bytes in both modes too, but a run of either
# takes tens of seconds (every port; the PIT's counting over seconds of virtual time),
# too slow for the suite; the 8259 test below holds what portscan found.
# taskswitch (its patched run stops at its first task switch: tests/e2e/test_taskswitch.py)
# and probeboot (it prints the entry registers and the firmware's GDT, which a PV domain
# is not given) have no PV run here.
SAME_EVERYWHERE = ["sieve", "ioheavy", "biggdt", "modcmd", "datatext", "hhpse"]
SAME_UNDER_PV = ["hello", "minikern"]
SAME_UNDER_TRAP = ["probefw", "probecfg", "cgacon"]


@pytest.mark.parametrize("mode, name", [
    *(("pv", name) for name in SAME_EVERYWHERE + SAME_UNDER_PV),
    *(("trap", name) for name in SAME_EVERYWHERE + SAME_UNDER_TRAP)])
def test_the_guest_prints_natives_bytes(runs, mode, name):
    native, other = runs(name, "native"), runs(name, mode)
    assert native.status == 0, native.stderr
    assert (other.status, other.stdout) == (native.status, native.stdout), other.stderr


@pytest.mark.parametrize("name", ["sieve", "ioheavy"])
def test_native_is_qemu_for_the_guests_without_an_e2e_test_of_their_own(runs, name):
    judge = run_qemu(guest_path(name), timeout=120)
    native = runs(name, "native")
    assert (native.status, native.stdout_bytes) == (judge.guest_code, judge.stdout)


# ---- trap-and-emulate: x86's holes show -------------------------------------------

@pytest.mark.parametrize("name", ["hello", "minikern"])
def test_trapped_self_tests_fail_exactly_where_the_instruction_does_not_fault(runs, name):
    native, trap = runs(name, "native"), runs(name, "trap")
    assert trap.stdout == predicted(native.stdout, name)
    assert trap.status == 1  # the guest's own verdict: some checks failed


# What probeboot reads with instructions that do not fault in ring 1: the segment
# registers (mov from a segment register) and the GDT (sgdt, then the table itself).
HOLE_LINE = re.compile(r"^(cs|ds|es|fs|gs|ss)=|^gdtr\.|^gdt\[\d+\]=", re.MULTILINE)


def test_trapped_probeboot_differs_only_in_what_ring_1_cannot_hide(runs):
    native, trap = runs("probeboot", "native"), runs("probeboot", "trap")
    assert trap.status == native.status == 0
    kept = [[line for line in run.stdout.splitlines() if not HOLE_LINE.match(line)]
            for run in (native, trap)]
    assert kept[0] == kept[1]
    selectors = dict(re.findall(r"^(cs|ss)=([0-9a-f]+)$", trap.stdout, re.MULTILINE))
    assert {int(value, 16) & 3 for value in selectors.values()} == {1}  # ring 1's RPL
    assert trap.stdout != native.stdout


def test_trapped_taskswitch_stops_at_its_tss_descriptor_with_a_clear_line(runs):
    """A PV GDT holds code and data segments only (Xen's check_descriptor): the
    hardware task switch taskswitch is about has no place under the hypervisor."""
    trap = runs("taskswitch", "trap")
    assert trap.status == 71
    line = trap.error_line()
    assert "emulating lgdt" in line and "system descriptor" in line and "is not allowed" in line
    assert "<main+" in line  # the EIP in the original image


# ---- what a PV domain (or ring 1) does not have ------------------------------------

def test_highhalf_under_pv_stops_at_its_mp_table_search_naming_it(runs):
    """Its search reads the BIOS data area, which a PV domain's memory does not hold
    (test_highhalf_pv.py has the run up to there)."""
    pv = runs("highhalf", "pv")
    assert pv.status == 71
    line = pv.error_line()
    assert "#PF at " in line and "<mpsearch1+" in line and "pvtool's glue" not in line


def test_trapped_highhalf_stops_at_the_local_apics_page(runs):
    native, trap = runs("highhalf", "native"), runs("highhalf", "trap")
    lines = native.stdout.splitlines()
    reached = lines[:lines.index(next(line for line in lines if line.startswith("apic: ")))]
    *found, stop = trap.stdout.splitlines()
    assert found == reached
    fault = re.fullmatch(r"highhalf: unexpected vector 14, error code 0x2, at 0x([0-9a-f]+)",
                         stop)  # a #PF on a write
    assert fault and _function_at(guest_path("highhalf"), int(fault[1], 16)) == "lapicinit"
    assert trap.status == 1


def _function_at(elf: Path, address: int) -> str:
    return max((value, name) for name, value in symbols(elf).items() if value <= address)[1]


NUMBERS = re.compile(rb"cycles=\d+")


@pytest.mark.parametrize("mode", ["pv", "trap"])
def test_nanobench_measures_the_same_operations_in_other_cycles(runs, mode):
    native, other = runs("nanobench", "native"), runs("nanobench", mode)
    assert other.status == native.status == 0
    assert NUMBERS.sub(b"", other.stdout_bytes) == NUMBERS.sub(b"", native.stdout_bytes)


@pytest.mark.parametrize("mode", ["pv", "trap"])
def test_apicprobe_stops_at_the_local_apics_page(runs, mode):
    native, other = runs("apicprobe", "native"), runs("apicprobe", mode)
    first = native.stdout.split(":")[0] + ":"  # "lapic at entry:", then the registers
    assert other.stdout == f"{first}apicprobe: unexpected exception 14\n"  # #PF
    assert other.status == 1


@pytest.mark.parametrize("mode", ["pv", "trap"])
def test_pcprobe_sees_the_emulators_cpuid_and_stops_at_unassigned_memory(runs, mode):
    native, other = runs("pcprobe", "native"), runs("pcprobe", mode)
    head = native.stdout.split("\nmemory ")[0].splitlines()
    without_cpuid = [line for line in other.stdout.splitlines()
                     if not line.startswith("cpuid ")]
    assert without_cpuid == [line for line in head if not line.startswith("cpuid ")] + [
        "trap: unexpected vector 14, error code 0x0"]
    assert other.status == 1
    assert other.stdout.startswith(head[0])


def test_probefw_under_pv_finds_no_firmware_tables_and_the_same_pci(runs):
    native, pv = runs("probefw", "native"), runs("probefw", "pv")
    assert pv.status == native.status == 0
    lines = native.stdout.splitlines()
    pci = lines[lines.index(next(line for line in lines if line.startswith("pci "))):
                lines.index(next(line for line in lines if line.startswith("pm ")))]
    *found, verdict = pv.stdout.splitlines()
    assert found == ["mp: no floating pointer", "acpi: no RSDP",
                     "smbios: no entry point", *pci]  # and no FADT: no PM timer to probe
    assert re.fullmatch(r"probefw: all \d+ checks passed", verdict)


def _fw_cfg_files(stdout: str) -> set[str]:
    return set(re.findall(r"^  (\S+): [0-9a-f]+ bytes at ", stdout, re.MULTILINE))


def test_probecfg_under_pv_finds_no_kernel_in_fw_cfg(runs):
    """QEMU's -kernel hands the kernel to the firmware through fw_cfg; a PV domain is
    loaded by the domain builder, so fw_cfg holds no kernel, and the rest is the same."""
    native, pv = runs("probecfg", "native"), runs("probecfg", "pv")
    assert pv.status == native.status == 0
    assert _fw_cfg_files(native.stdout) - _fw_cfg_files(pv.stdout) == {
        "bootorder", "genroms/multiboot_dma.bin"}
    assert _fw_cfg_files(pv.stdout) < _fw_cfg_files(native.stdout)
    # fw_cfg's kernel entry, kernel data and initrd data (items 0x10-0x12): empty
    native_items, pv_items = (re.findall(r"^  0000001[0-2] ([0-9a-f]+) ", run.stdout,
                                         re.MULTILINE) for run in (native, pv))
    assert len(pv_items) == len(native_items)
    assert {value.strip("0") for value in pv_items} == {""}
    assert all(value.strip("0") for value in native_items)


def test_cgacon_under_pv_finds_its_own_blank_memory_for_the_firmwares_screen(runs):
    native, pv = runs("cgacon", "native"), runs("cgacon", "pv")
    assert pv.status == native.status == 0
    entry = [line for line in pv.stdout.splitlines() if line.startswith("entry row ")]
    assert entry and all(set(line.split(": ")[1].split()) == {"0"} for line in entry)
    after = [line for line in native.stdout.splitlines() if not line.startswith("entry row ")]
    assert pv.stdout.splitlines()[len(entry):] == after


# ---- regressions --------------------------------------------------------------------

def _pic_masks(machine: Machine) -> list[int]:
    return [machine.ports.read(port + 1, 1) for port in (MASTER_PIC_PORT, SLAVE_PIC_PORT)]


def test_a_pv_domain_finds_the_8259s_as_the_firmware_left_them():
    """portscan read the masks as 00 under PV, b8 and 8e natively: the PV boot skipped
    the device half of the firmware's POST (machine/firmware/post.py)."""
    native, pv = Machine(output=bytearray().extend), Machine(output=bytearray().extend)
    boot_bare_pc(native, load_elf(guest_path("hello")), cmdline=b"", modules=())
    boot_pv_domain(pv, load_elf(patched_once("hello")))
    assert _pic_masks(pv) == _pic_masks(native) != [0, 0]
