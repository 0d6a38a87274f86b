"""machine/debugexit.py: QEMU's isa-debug-exit (ports 0xF4-0xF7)."""

import pytest

from pvtool.machine.debugexit import DebugExit
from pvtool.machine.stop import StopKind
from tests.machine.harness import assert_same_as_qemu, run_native


def test_a_write_at_any_offset_and_width_is_the_exit_code():
    codes = []
    device = DebugExit(codes.append)
    device.write(0, 1, 3)
    device.write(2, 2, 0x1234)
    device.write(3, 4, 0xDEAD_BEEF)
    assert codes == [3, 0x1234, 0xDEAD_BEEF]
    assert device.read(0, 4) == 0


EXIT_SCENARIO = """
    .globl test_main, the_exit
test_main:
    mov $'a', %al
    mov $0x3f8, %dx
    out %al, %dx
    mov ${value:#x}, %eax
    mov ${port:#x}, %dx
the_exit:
    {insn} %dx
    mov $'X', %al               # never runs: the exit ends the machine at once
    mov $0x3f8, %dx
    out %al, %dx
    mov $9, %eax
    ret
"""


@pytest.mark.parametrize("insn, port, value, code", [
    ("out %al,", 0xF4, 0x07, 0x07),
    ("out %al,", 0xF6, 0x05, 0x05),  # any port of the four
    ("out %ax,", 0xF4, 0x0123, 0x0123),
    ("out %eax,", 0xF4, 0x0001_0022, 0x0001_0022),
])
def test_a_guest_exit_stops_at_the_out_with_its_code_as_on_qemu(build, insn, port, value,
                                                                code):
    guest = build(EXIT_SCENARIO.format(insn=insn, port=port, value=value))
    run = run_native(guest)

    assert run.stop.kind is StopKind.GUEST_EXIT
    assert run.stop.code == code
    assert run.stop.guest_chose
    assert run.output == b"a"
    # QEMU's status is (code << 1) | 1, of which a process status keeps 8 bits.
    assert_same_as_qemu_low_bits(run)


def assert_same_as_qemu_low_bits(run):
    from tests.machine.harness import qemu

    judge = qemu(run.guest)
    assert judge.stdout == bytes(run.output)
    assert judge.status == ((run.stop.code << 1) | 1) & 0xFF


def test_reading_the_exit_port_returns_0_and_does_not_exit(build):
    guest = build("""
    .include "macros.inc"
    .globl test_main
test_main:
    mov $0xf4, %dx
    mov $0xffffffff, %eax
    in %dx, %eax
    REC %eax
    mov $4, %eax
    ret
""")
    run = run_native(guest)

    assert run.records() == [0]
    assert run.stop.code == 4
    assert_same_as_qemu(run)
