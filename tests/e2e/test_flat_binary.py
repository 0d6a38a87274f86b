"""Flat Multiboot binaries (`ld --oformat binary`, no ELF headers; the Multiboot header's
a.out kludge, flag 16, says where they go) on QEMU's -kernel and on pvtool, side by
side: the tutorial kernel's serial bytes and exit status, the header's fields pushed to
each edge QEMU accepts, the ones it refuses, and the commands that need an ELF."""

import pytest

from pvtool.bench.qemu import QEMU
from pvtool.bench.qemu import run_qemu as run_qemu_process
from pvtool.image.flat import load_flat
from pvtool.machine.cpu import EIP
from pvtool.machine.loader import load_multiboot
from pvtool.machine.pc import Machine
from tests import cli
from tests.image.flats import GUEST_CODE, OUTPUT_LINES, flat_kernel
from tests.oracles import require_tool, run_qemu


def assert_boots_as_on_qemu(kernel, *mode):
    judge = run_qemu(kernel, timeout=30)
    done = cli.pvtool("run", *mode, "--quiet", kernel)
    assert judge.stdout.startswith(b"flat kernel\n2badb002\n")
    assert judge.stdout.count(b"\n") == OUTPUT_LINES
    assert judge.guest_code == GUEST_CODE
    assert (done.stdout_bytes, done.status) == (judge.stdout, judge.guest_code), done.stderr


ACCEPTED = {
    "tutorial": {},
    "load-end-0-means-the-whole-file": {"load_end": 0},
    "bss-beyond-the-file": {"bss_end": 0x200000},
    "text-before-the-header": {"pad": 0x40},
    "header-at-qemus-last-offset": {"pad": 8140},  # QEMU looks below 8192 - 48
    "video-mode-asked": {"flags": 0x10007},  # QEMU warns that it has no VBE, and boots
    "unknown-requirement": {"flags": 0x10013},  # QEMU does not refuse bit 4
}


@pytest.mark.parametrize("fields", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_a_flat_kernel_prints_on_pvtool_what_it_prints_on_qemu(tmp_path, fields):
    assert_boots_as_on_qemu(flat_kernel(tmp_path, **fields), "--native")


# QEMU 7.2 refuses these with one line and status 1 (hw/i386/multiboot.c).
REFUSED = {
    "no-flag-16": ({"flags": 0x3}, "does not set flag 16"),
    "header-addr-below-load-addr": ({"load_addr": "header + 4"}, "header_addr"),
    "load-addr-before-the-file": ({"load_addr": "file_start - 4"}, "before the start"),
    "load-end-below-load-addr": ({"load_end": "file_start - 4"}, "load_end_addr"),
    "load-end-past-the-file": ({"load_end": "_load_end + 1", "bss_end": 0},
                               "past the end of the file"),
    "bss-end-inside-the-text": ({"bss_end": "_load_end - 4"}, "bss_end_addr"),
}


@pytest.mark.parametrize(("fields", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_pvtool_refuses_what_qemu_refuses_with_one_line(tmp_path, fields, reason):
    kernel = flat_kernel(tmp_path, **fields)
    judge = run_qemu_process(require_tool(QEMU), kernel, None, timeout=30)
    done = cli.pvtool("run", "--native", "--quiet", kernel)
    # QEMU refuses the file: status 1 with its error line, not a kill at the timeout.
    assert judge.status == 1 and judge.output == b""
    assert judge.failure is not None and judge.stderr.startswith("qemu-system-i386: ")
    assert done.status == 65
    assert reason in done.error_line()
    assert done.stdout == ""


def test_a_header_past_where_qemu_looks_is_refused(tmp_path):
    # QEMU takes the file for a Linux kernel: it refuses it ("invalid kernel header")
    # or, for some sizes, runs something else that prints nothing.
    kernel = flat_kernel(tmp_path, pad=8144)
    judge = run_qemu_process(require_tool(QEMU), kernel, None, timeout=5)
    done = cli.pvtool("run", "--native", "--quiet", kernel)
    assert judge.output == b""
    assert judge.failure is not None or judge.status == -9
    assert done.status == 69
    assert "past the first 8144 bytes" in done.error_line()


def test_a_file_with_no_header_is_still_not_an_elf(tmp_path):
    kernel = flat_kernel(tmp_path, pad=8192)
    done = cli.pvtool("run", "--native", "--quiet", kernel)
    assert done.status == 65
    assert done.error_line().endswith("not an ELF file (no \\x7fELF magic)")


@pytest.mark.parametrize("entry", ["stack_first", None])
def test_trap_mode_boots_a_flat_kernel_as_qemu_does(tmp_path, entry):
    # The default entry pushes before it sets a stack: trap mode enters with the
    # loader's ESP, as native mode and QEMU do.
    kernel = flat_kernel(tmp_path, entry=entry) if entry else flat_kernel(tmp_path)
    assert_boots_as_on_qemu(kernel, "--trap")


@pytest.mark.parametrize("command", [["patch"], ["run", "--pv"], ["run"]])
def test_the_elf_only_commands_refuse_a_flat_binary_saying_what_they_need(tmp_path,
                                                                          command):
    kernel = flat_kernel(tmp_path)
    done = cli.pvtool(*command, kernel)
    assert done.status == 69
    assert done.error_line().endswith(
        "a flat Multiboot binary, not an ELF file; only run --native and run --trap "
        "boot one, this command needs an ELF kernel")
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".elf") == []


def test_a_hlt_in_a_flat_kernel_is_seen_as_a_halt(tmp_path):
    # Without the debug exit the kernel ends in cli; hlt, which nothing can wake.
    kernel = flat_kernel(tmp_path, entry="halt_here")
    done = cli.pvtool("run", "--native", "--quiet", "--max-insns", "1000000", kernel)
    assert done.status == 79
    assert "hlt with interrupts disabled" in done.error_line()



def test_an_entry_outside_the_loaded_text_is_jumped_to_as_qemu_does(tmp_path):
    # QEMU does not check entry_addr: it enters the zeros at 3 MiB, runs on into
    # unassigned memory and never prints (what it meets there is the machine's part).
    kernel = flat_kernel(tmp_path, entry=0x300000)
    judge = run_qemu_process(require_tool(QEMU), kernel, None, timeout=3)
    machine = Machine(output=lambda data: None)
    boot = load_multiboot(machine, load_flat(kernel))
    assert (judge.status, judge.output) == (-9, b"")
    assert boot.entry == machine.cpu.read(EIP) == 0x300000
