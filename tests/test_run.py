"""`pvtool run --native` (run.py and the run command of cli.py): the run loop's
stops and limits, the exit statuses the README lists, and the one-line errors.

Guests are tiny kernels from tests/guests_asm built with GNU as/ld; pvtool runs in a
child process, as a user runs it, so exit statuses, stdout and stderr are the real ones.
"""

import json
import re
from functools import partial

import pytest

from pvtool.machine.stop import StopKind
from pvtool.run import Mode, RunOptions, run_image
from tests import cli
from tests.guests_asm.build import BARE, GuestBuilder
from tests.image.elfs import build_elf64
from tests.oracles import run_qemu

GUEST_LIMIT, GUEST_HALTED, GUEST_CRASHED = 78, 79, 71

LOOP = BARE + """
    .globl the_loop
the_loop:
    jmp the_loop
"""
CLI_HLT = BARE + """
    cli
    .globl the_hlt, after_hlt
the_hlt:
    hlt
after_hlt:
    jmp the_hlt
"""
STI_HLT = CLI_HLT.replace("    cli\n", "    sti\n")
# 1 + 1000 (loop) + 3 instructions; the exit is the last one.
COUNTED = BARE + """
    mov $1000, %ecx
1:  loop 1b
    mov $0xf4, %dx
    mov $3, %al
    out %al, %dx
    hlt
"""
COUNTED_INSNS = 1004
PRINTS = BARE + """
    mov $0x3f8, %dx
    mov $'o', %al
    out %al, %dx
    mov $'k', %al
    out %al, %dx
    mov $0xf4, %dx
    mov ${code}, %al
    out %al, %dx
    hlt
"""


@pytest.fixture(scope="module")
def builder(tmp_path_factory) -> GuestBuilder:
    return GuestBuilder(tmp_path_factory.mktemp("run-guests"))


@pytest.fixture(scope="module")
def build(builder):
    """build(source) -> Guest: a bare kernel, no runtime (source starts at _start)."""

    def build_bare(source: str, **kwargs):
        return builder.build(source, runtime=False, **kwargs)

    return build_bare


# pvtool in a child process: the exit status and output a shell would see.
pvtool = partial(cli.pvtool, process=True, timeout=60)


# ---- the guest's own exit


@pytest.mark.parametrize("code", [0, 3, 42])
def test_exit_status_is_the_guests_code_and_stdout_its_serial_bytes(build, code):
    done = pvtool("run", "--native", "--quiet", str(build(PRINTS.format(code=code)).elf))
    assert (done.status, done.stdout, done.stderr) == (code, "ok", "")


def test_quiet_hides_the_summary_that_is_otherwise_on_stderr(build):
    elf = str(build(PRINTS.format(code=0)).elf)
    loud = pvtool("run", "--native", elf)
    assert "native run: guest-exit: guest exit code 0" in loud.stderr
    assert re.search(r"\bio\b[\s│|]*3\b", loud.stderr)  # the exits table
    assert loud.stdout == "ok"  # the summary never mixes into the guest's bytes
    assert pvtool("run", "--native", "--quiet", elf).stderr == ""


def test_json_summary_in_its_file_names_the_stop_and_counts_exits(build, tmp_path):
    done = pvtool("run", "--native", "--json", tmp_path / "run.json",
                  str(build(PRINTS.format(code=5)).elf))

    summary = json.loads((tmp_path / "run.json").read_text())
    assert "native run: guest-exit" in done.stderr  # the human summary as well
    assert done.status == 5
    assert done.stdout == "ok"
    assert summary["mode"] == "native"
    assert summary["stop"]["kind"] == "guest-exit"
    assert summary["stop"]["guest_code"] == 5
    assert summary["stop"]["guest_chose"] is True
    assert summary["exits"] == {"io": 3}
    assert summary["uart_bytes"] == 2


def test_json_with_a_limit_stop_is_whole_and_quiet_leaves_one_error_line(build, tmp_path):
    guest = build(LOOP)
    done = pvtool("run", "--native", "--quiet", "--json", tmp_path / "run.json",
                  "--max-insns", "500", str(guest.elf))

    last = done.error_line()
    summary = json.loads((tmp_path / "run.json").read_text())
    assert done.status == GUEST_LIMIT
    assert summary["stop"]["kind"] == "insn-limit"
    assert summary["stop"]["guest_chose"] is False
    assert summary["stop"]["ip"] == summary["stop"]["eip"] == guest["the_loop"]
    assert last.startswith(cli.ERROR_PREFIX)


# ---- limits and halts


def test_max_insns_stops_a_guest_that_loops_forever(build):
    guest = build(LOOP)
    done = pvtool("run", "--native", "--quiet", "--max-insns", "250000", str(guest.elf))

    assert done.status == GUEST_LIMIT
    line = done.error_line()
    assert "--max-insns 250000" in line
    assert f"eip {guest['the_loop']:#010x}" in line


@pytest.mark.parametrize("limit, stop", [(COUNTED_INSNS, StopKind.GUEST_EXIT),
                                         (COUNTED_INSNS - 1, StopKind.INSN_LIMIT)])
def test_max_insns_counts_instructions_exactly(build, limit, stop):
    result = run_image(build(COUNTED).elf, RunOptions(mode=Mode.NATIVE, max_insns=limit),
                       output=lambda data: None)
    assert result.stop.kind is stop
    if stop is StopKind.GUEST_EXIT:
        assert result.stop.code == 3
    else:
        assert result.insns_upper_bound == limit


def test_timeout_stops_a_guest_that_loops_forever(build):
    guest = build(LOOP)
    done = pvtool("run", "--native", "--quiet", "--timeout", "0.3", str(guest.elf))

    assert done.status == GUEST_LIMIT
    line = done.error_line()
    assert "--timeout 0.3 s" in line
    assert f"eip {guest['the_loop']:#010x}" in line


def test_timeout_is_wall_clock_time(build):
    # Library level, to time the run loop alone (not the interpreter's start-up).
    result = run_image(build(LOOP).elf, RunOptions(mode=Mode.NATIVE, timeout=0.2),
                       output=lambda data: None)
    assert result.stop.kind is StopKind.TIMEOUT
    assert 0.2 <= result.wall_seconds < 2.0


def test_cli_hlt_stops_with_the_halted_status(build):
    guest = build(CLI_HLT)
    done = pvtool("run", "--native", "--quiet", str(guest.elf))

    assert done.status == GUEST_HALTED
    line = done.error_line()
    assert "hlt with interrupts disabled" in line
    assert f"eip {guest['after_hlt']:#010x}" in line  # a halted CPU's EIP is past hlt


def test_sti_hlt_with_nothing_to_wake_the_guest_is_halted_too(build):
    result = run_image(build(STI_HLT).elf, RunOptions(mode=Mode.NATIVE),
                       output=lambda data: None)
    assert result.stop.kind is StopKind.HALTED
    assert result.exits["hlt"] == 1


F4_LOOP = BARE + """
    .globl the_loop
the_loop:
    nop
    mov $0xf4, %al              # ends with the byte 0xf4, the opcode of hlt
    jmp the_loop
"""


def test_a_slice_ending_after_an_instruction_ending_in_f4_is_not_a_halt(build):
    # The budget ends the only slice after the mov; a slice boundary of the unlimited
    # run loop lands there just as well, one slice in three.
    result = run_image(build(F4_LOOP).elf, RunOptions(mode=Mode.NATIVE, max_insns=2),
                       output=lambda data: None)
    assert result.stop.kind is StopKind.INSN_LIMIT


def test_a_triple_fault_is_a_crash_with_its_eip(build):
    guest = build(BARE + """
    lidt empty_idt
    .globl the_int3
the_int3:
    int3                        # limit 0: #GP, #GP again -> #DF, -> triple fault
    .data
    .align 4
    .word 0
empty_idt:
    .word 0
    .long 0
""")
    done = pvtool("run", "--native", "--quiet", str(guest.elf))

    assert done.status == GUEST_CRASHED
    line = done.error_line()
    assert "triple-fault" in line
    assert f"eip {guest['the_int3']:#010x}" in line


def test_output_without_a_newline_still_reaches_stdout_before_a_crash(build):
    guest = build(BARE + """
    mov $0x3f8, %dx
    mov $'z', %al
    out %al, %dx
    jmp *%eax                   # EAX holds the Multiboot magic: no RAM there
""")
    done = pvtool("run", "--native", "--quiet", "--memory", "16", str(guest.elf))
    assert done.stdout == "z"
    assert done.status == GUEST_CRASHED
    assert "emulator-error" in done.error_line()


# ---- --memory and --cmdline reach the guest


def test_memory_and_cmdline_options_reach_the_multiboot_info(builder):
    guest = builder.build("""
    .include "macros.inc"
    .globl test_main
test_main:
    mov boot_ebx, %ebx
    REC 8(%ebx)                 # mem_upper
    mov 16(%ebx), %esi          # cmdline
1:  movb (%esi), %al
    test %al, %al
    jz 2f
    call putc
    inc %esi
    jmp 1b
2:  mov $'\\n', %al
    call putc
    xor %eax, %eax
    ret
""")
    done = pvtool("run", "--native", "--quiet", "--memory", "16", "--cmdline", "a=1 b",
                  str(guest.elf))
    # QEMU's command line: the kernel's path, a space, -append's text; mem_upper ends
    # where SeaBIOS's reserved 128 KiB at the top of RAM begins.
    assert (done.status, done.stdout) == (0, f"{guest.elf} a=1 b\n%08x\n" % (15 * 1024 - 128))
    judge = run_qemu(guest.elf, timeout=30, extra_args=("-m", "16", "-append", "a=1 b"))
    assert done.stdout_bytes == judge.stdout


# ---- bad input: one line, a distinct status, no traceback (README, "Exit status")


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, build):
    where = tmp_path_factory.mktemp("bad-inputs")
    not_elf = where / "notes.txt"
    not_elf.write_text("not a kernel\n")
    return {
        "missing": (where / "nothing-here.elf", 66, "no such file"),
        "not-elf": (not_elf, 65, "not an ELF"),
        "elf64": (build_elf64(where), 69, ""),
        "no-multiboot": (build(".globl _start\n_start:\n    hlt\n").elf, 69,
                         "no Multiboot header"),
    }


@pytest.mark.parametrize("case", ["missing", "not-elf", "elf64", "no-multiboot"])
def test_bad_input_is_one_error_line_with_its_status(bad_inputs, case):
    path, status, words = bad_inputs[case]
    done = pvtool("run", "--native", str(path))

    assert done.status == status
    line = done.error_line()
    assert str(path) in line
    assert words in line
    assert done.stdout == ""


@pytest.mark.parametrize("case", ["missing", "not-elf", "elf64"])
def test_debug_shows_the_traceback_and_keeps_the_status(bad_inputs, case):
    path, status, _ = bad_inputs[case]
    done = pvtool("--debug", "run", "--native", str(path))

    assert done.status == status
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.rstrip("\n").splitlines()[-1].startswith(cli.ERROR_PREFIX)


def test_an_image_without_xen_notes_needs_native(build):
    done = pvtool("run", str(build(PRINTS.format(code=0)).elf))
    assert done.status == 69
    assert "--native" in done.error_line()


def test_a_segment_outside_the_machines_ram_is_refused(build):
    guest = build(BARE + "    hlt\n    .bss\n    .space 0x1000\n",
                  ld_args=("-Tbss", "0x7ff000"))
    done = pvtool("run", "--native", "--memory", "4", str(guest.elf))
    assert done.status == 69
    assert "0x7ff000" in done.error_line()


def test_an_error_names_a_path_with_brackets_as_it_is(tmp_path):
    path = tmp_path / "build[bold]" / "missing.elf"
    done = pvtool("run", "--native", str(path))
    assert done.status == 66
    assert str(path) in done.error_line()
