"""guests/modcmd prints its command line and each module's string, length and bytes.
QEMU (-append, -initrd) is the oracle; pvtool's native PC, the patched kernel under PV
(`run --module`, start_info's modules and pvtool's Multiboot table, docs/ABI.md) and
trap-and-emulate must print the same bytes. The command line holds the kernel's path,
so every run boots a file of the same relative name from a folder of its own, with the
modules named by the same relative paths."""

import shutil

import pytest

from tests import cli
from tests.oracles import guest_path, run_qemu

CMDLINE = "root=/dev/x  two spaces"
MODULES = {"first.bin": b"first module\x00\x01\x7f\xff\\",
           "second.txt": bytes(range(32, 127)) * 40}
KERNEL = "modcmd.elf"
RELATIVE_MODULES = [f"../modules/{name}" for name in MODULES]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """native/modcmd.elf (the guest), pv/modcmd.elf (patched) and modules/."""
    root = tmp_path_factory.mktemp("modcmd")
    for sub in ("native", "pv", "modules"):
        (root / sub).mkdir()
    for name, data in MODULES.items():
        (root / "modules" / name).write_bytes(data)
    shutil.copy(guest_path("modcmd"), root / "native" / KERNEL)
    assert cli.pvtool("patch", root / "native" / KERNEL, "-o", root / "pv" / KERNEL).status == 0
    return root


def run_args(*modules: str) -> list[str]:
    return ["--quiet", "--cmdline", CMDLINE, *(a for m in modules for a in ("--module", m)),
            KERNEL]


@pytest.fixture
def native(folders, monkeypatch):
    monkeypatch.chdir(folders / "native")
    return cli.pvtool("run", "--native", *run_args(*RELATIVE_MODULES))


def test_native_prints_qemus_bytes(folders, monkeypatch, native):
    monkeypatch.chdir(folders / "native")
    on_qemu = run_qemu(KERNEL, extra_args=("-append", CMDLINE,
                                           "-initrd", ",".join(RELATIVE_MODULES)))
    assert on_qemu.stdout.startswith(b'modcmd: cmdline "modcmd.elf root=/dev/x  two spaces"\n'
                                     b"modcmd: 2 modules\n"
                                     b'modcmd: module 0 "../modules/first.bin", 17 bytes: '
                                     b"first module\\x0\\x1\\x7f\\xff\\x5c\n")
    assert on_qemu.guest_code == 0
    assert (native.stdout_bytes, native.status) == (on_qemu.stdout, 0)


def test_patched_under_pv_gets_the_modules_and_command_line_native_gets(folders, monkeypatch,
                                                                        native):
    monkeypatch.chdir(folders / "pv")
    done = cli.pvtool("run", *run_args(*RELATIVE_MODULES))
    assert (done.stdout_bytes, done.status) == (native.stdout_bytes, native.status)


def test_trap_and_emulate_gets_them_too(folders, monkeypatch, native):
    monkeypatch.chdir(folders / "native")
    done = cli.pvtool("run", "--trap", *run_args(*RELATIVE_MODULES))
    assert (done.stdout_bytes, done.status) == (native.stdout_bytes, native.status)


@pytest.mark.parametrize("modules", [(), RELATIVE_MODULES[:1]], ids=["none", "one"])
def test_pv_with_fewer_modules_matches_native(folders, monkeypatch, modules):
    monkeypatch.chdir(folders / "native")
    expected = cli.pvtool("run", "--native", *run_args(*modules))
    monkeypatch.chdir(folders / "pv")
    done = cli.pvtool("run", *run_args(*modules))
    assert expected.status == 0
    assert (done.stdout_bytes, done.status) == (expected.stdout_bytes, expected.status)
