"""bench/qemu.py starts either QEMU: qemu-system-x86_64 (QEMU64) for the 64-bit guests
takes the same machine arguments as qemu-system-i386, and its runs and failures are
reported under its own name."""

from pvtool.bench.qemu import QEMU, QEMU64, QEMU_ARGS, QemuRun, qemu_command, qemu_path, run_qemu
from tests.oracles import guest_path, require_tool


def test_both_qemus_get_the_same_pc(tmp_path):
    disk = tmp_path / "disk.img"
    i386 = qemu_command(QEMU, tmp_path / "k.elf", [disk])
    x86_64 = qemu_command(QEMU64, tmp_path / "k.elf", [disk])

    assert i386[1:] == x86_64[1:]
    assert x86_64[0] == QEMU64
    assert x86_64[3:3 + len(QEMU_ARGS)] == list(QEMU_ARGS)


def test_qemu_path_finds_the_program_asked_for():
    assert qemu_path(QEMU64) == require_tool(QEMU64)
    assert qemu_path("qemu-system-none-such") is None


def test_run_on_qemu_x86_64_boots_a_64_bit_guest_to_its_exit_code():
    run = run_qemu(require_tool(QEMU64), guest_path("minikern64"), None, timeout=60)

    assert run.guest_code == 0 and run.failure is None
    assert run.program == QEMU64
    assert run.output.endswith(b"minikern64: all 32 checks passed\n")


def test_a_failure_names_the_qemu_that_failed():
    killed = QemuRun(b"", -9, 1.0, "killed after 1 s", QEMU64)
    refused = QemuRun(b"", 1, 0.1, "qemu: could not load kernel\n", QEMU64)

    assert killed.failure == f"{QEMU64} was killed: killed after 1 s"
    assert refused.failure == f"{QEMU64}: qemu: could not load kernel"
    assert QemuRun(b"", -9, 1.0, "").failure == f"{QEMU} was killed: signal 9"
