"""What `pvtool run` tells a user whose kernel died: one error line naming the fault
chain (each vector with its error code, CR2 for #PF, where the CPU was, with the
image's symbol), the registers in `--json`, and `--trace-int`'s delivery log, the
lines QEMU's `-d int` prints for the same kernel, in every mode.

The chains' error codes follow the SDM (Vol. 3A, 6.13: a fault on a vector's own IDT
entry has error code vector * 8 + 2; table 6-5 decides which pairs make #DF).
"""

import json
import os
import re
from functools import partial

import pytest

from tests import cli
from tests.guests_asm.build import BARE, GuestBuilder
from tests.oracles import guest_path, qemu_int_log

GUEST_CRASHED = 71
run = partial(cli.pvtool, "run")

# int3 with an IDT of limit 0: each vector is past the limit (#GP(vector * 8 + 2)).
# The stack is the kernel's own: Multiboot leaves ESP undefined.
EMPTY_IDT = BARE + """
    mov $0x80000, %esp
    pushl $0                    # the IDT's base,
    pushw $0                    # its limit: lidt's 6-byte operand
    lidt (%esp)
    .globl the_int3
the_int3:
    int3
"""
# A read of an unmapped page, with the runtime's zeroed IDT: #PF, whose gate is not a
# gate (#GP, checked before presence, as QEMU does), makes #DF (table 6-5), whose gate
# is not one either.
UNMAPPED_READ = """
    .include "macros.inc"
    .globl test_main, bad_read
test_main:
    call paging_on
    UNMAP 0x340000
bad_read:
    mov 0x340000, %eax
    ret
"""


@pytest.fixture(scope="module")
def guests(tmp_path_factory) -> dict:
    """The two crashing guests, by name."""
    builder = GuestBuilder(tmp_path_factory.mktemp("diagnostics-guests"))
    return {"empty_idt": builder.build(EMPTY_IDT, runtime=False),
            "unmapped_read": builder.build(UNMAPPED_READ),
            "no_label_at_the_fault": builder.build(UNMAPPED_READ.replace("bad_read:", ""))}


@pytest.fixture(scope="module")
def empty_idt(guests):
    return guests["empty_idt"]


def test_a_triple_fault_names_its_chain_and_the_symbol_in_one_line(empty_idt):
    done = run("--native", "--quiet", empty_idt.elf)

    assert done.status == GUEST_CRASHED
    assert done.error_line() == (
        "pvtool: error: triple-fault: triple fault after "
        "int 0x3 -> #GP(0x1a) -> #GP(0x6a) -> #DF(0x0) -> #GP(0x42) "
        "(vector 3 is past the IDT's limit; vector 13 is past the IDT's limit; "
        f"vector 8 is past the IDT's limit) at eip {empty_idt['the_int3']:#010x} <the_int3>")


def test_a_page_fault_chain_shows_cr2(guests):
    unmapped_read = guests["unmapped_read"]
    line = run("--native", "--quiet", unmapped_read.elf).error_line()

    assert "triple fault after #PF(0x0, cr2 0x340000) -> #GP(0x72) -> #DF(0x0) -> " \
           "#GP(0x42) (" in line
    assert line.endswith(f"at eip {unmapped_read['bad_read']:#010x} <bad_read>")


def test_the_summary_does_not_repeat_the_error(empty_idt):
    done = run("--native", empty_idt.elf)

    reasons = [line for line in done.stderr.splitlines() if "triple fault after" in line]
    assert len(reasons) == 1 and reasons[0].startswith(cli.ERROR_PREFIX), done.stderr
    assert "native run: triple-fault" in done.stderr


def test_json_carries_the_registers_at_the_stop(empty_idt, tmp_path):
    run("--native", "--json", tmp_path / "run.json", empty_idt.elf)
    summary = json.loads((tmp_path / "run.json").read_text())

    assert summary["stop"]["kind"] == "triple-fault"
    assert summary["stop"]["symbol"] == "the_int3"
    registers = summary["registers"]
    assert (registers["cs"], registers["ss"], registers["cpl"]) == (0x08, 0x10, 0)
    assert registers["cr0"] & 1  # still in protected mode, as the loader left it
    assert set(registers) >= {"eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp",
                              "eip", "eflags", "cr2", "cr3"}


@pytest.mark.parametrize(("guest", "vectors"), [
    ("empty_idt", ["v=03", "v=0d", "v=08"]),  # the #GP of int3 is delivered serially
    ("unmapped_read", ["v=0e", "v=08"]),
])
def test_trace_int_logs_a_fault_chain_as_qemu_does(guest, vectors, guests):
    elf = guests[guest].elf
    expected = qemu_int_log(elf, timeout=30)

    done = run("--native", "--quiet", "--trace-int", elf)

    assert done.stderr.splitlines()[:-1] == expected  # then the error line
    assert [line.split()[1] for line in expected] == vectors


def test_trace_int_in_trap_mode_shows_the_kernel_in_ring_1():
    done = run("--trap", "--quiet", "--trace-int", guest_path("hello"))

    lines = done.stderr.splitlines()
    assert len(lines) == 1  # hello's one int3
    assert re.fullmatch(r"\s+0: v=03 e=0000 i=1 cpl=1 IP=0009:[0-9a-f]{8} "
                        r"SP=0011:[0-9a-f]{8} EAX=600df00d", lines[0]), lines


def test_trace_int_in_pv_mode_shows_bounces_and_event_upcalls():
    done = run("--quiet", "--trace-int", "--xen-console", os.devnull, guest_path("xenhello"))

    assert done.status == 0
    lines = done.stderr.splitlines()
    # xenhello's int3, bounced through its trap table from ring 1, then its two timer
    # events and the console's (raised once its ring output is drained, as xenconsoled
    # does: docs/ABI.md), each through the event callback.
    assert re.fullmatch(r"\s+0: v=03 e=0000 i=1 cpl=1 IP=e019:[0-9a-f]{8} "
                        r"SP=e021:[0-9a-f]{8} EAX=[0-9a-f]{8}", lines[0]), lines
    for line, number in zip(lines[1:], (1, 2, 3), strict=True):
        assert re.fullmatch(rf"\s+{number}: the event callback cpl=1 IP=e019:[0-9a-f]{{8}} "
                            r"SP=e021:[0-9a-f]{8}", line), lines
    assert len(lines) == 4



def test_an_eip_past_an_assembly_label_is_shown_from_that_label(guests):
    # Assembly labels have no size: a stop after one is named from the last before it.
    guest = guests["no_label_at_the_fault"]
    line = run("--native", "--quiet", guest.elf).error_line()

    eip = int(re.search(r"at eip (0x[0-9a-f]+) <", line).group(1), 16)
    assert guest["test_main"] < eip < guest["test_main"] + 0x40
    assert line.endswith(f"<test_main+{eip - guest['test_main']:#x}>")
