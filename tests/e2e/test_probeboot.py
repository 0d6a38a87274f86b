"""guests/probeboot on QEMU and on pvtool's native PC: the registers the Multiboot
loader leaves, its GDT, A20, the whole information structure with its strings,
modules and memory map, the IVT, the BIOS data area and the EBDA, printed on COM1,
must be the same bytes, for several -m, -append, -initrd and disk set-ups."""

import pytest

from tests import cli
from tests.oracles import guest_path, run_qemu

MODULE_BYTES = {"first.bin": b"MODULE-ONE-DATA\n", "second.bin": b"B" * 5000}


def _modules(tmp_path, names):
    paths = []
    for name in names:
        path = tmp_path / name
        path.write_bytes(MODULE_BYTES[name])
        paths.append(str(path))
    return paths


def _disks(tmp_path, count):
    """COUNT disks of different sizes (each hard disk's parameter table shows it)."""
    paths = []
    for index in range(count):
        path = tmp_path / f"disk{index}.img"
        path.write_bytes(bytes((index + 1) << 20))
        paths.append(path)
    return paths


# (QEMU's memory in MiB, -append, -initrd's files, how many disks)
SETUPS = {
    "defaults": (None, None, (), 0),
    "small-with-append": (16, "console=ttyS0 quiet", (), 0),
    "modules": (512, "x", ("first.bin", "second.bin"), 0),
    "large-one-module": (3072, None, ("second.bin",), 0),
    "disk": (None, None, (), 1),
    "three-disks": (None, None, (), 3),
}


@pytest.mark.parametrize("setup", SETUPS.values(), ids=SETUPS.keys())
def test_probeboot_prints_qemus_bytes(tmp_path, setup):
    memory, append, module_names, disk_count = setup
    elf = guest_path("probeboot")
    modules = _modules(tmp_path, module_names)
    disks = _disks(tmp_path, disk_count)
    qemu_args, pvtool_args = [], []
    if memory is not None:
        qemu_args += ["-m", str(memory)]
        pvtool_args += ["--memory", str(memory)]
    if append is not None:
        qemu_args += ["-append", append]
        pvtool_args += ["--cmdline", append]
    if modules:
        qemu_args += ["-initrd", ",".join(modules)]
        pvtool_args += [arg for path in modules for arg in ("--module", path)]
    pvtool_args += [arg for path in disks for arg in ("--disk", str(path))]

    judge = run_qemu(elf, disks=disks, timeout=60, extra_args=qemu_args)
    done = cli.pvtool("run", "--native", "--quiet", *pvtool_args, str(elf))

    assert judge.stdout.startswith(b"probeboot\n")
    assert judge.stdout.endswith(b"probeboot: done\n")
    assert done.stdout_bytes == judge.stdout
    assert judge.guest_code == 0
    assert done.status == judge.guest_code
