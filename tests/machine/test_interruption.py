"""What the machine tells a supervisor about each interrupt and exception
(machine/interruption.py): Unicorn reports `int n`, int3, into and faults alike, and
the machine works out which it was, the return address, the length of a software
interrupt's instruction and a fault's error code, and acknowledges the fault."""

import pytest

from pvtool.machine import cpu as C
from pvtool.machine.interruption import Kind
from pvtool.machine.native import BareMetal
from pvtool.machine.stop import Stop, StopKind
from tests.machine.harness import boot_native
from tests.machine.test_pc import bare


class Recorder(BareMetal):
    """Records the first interruption and stops the machine."""

    def __init__(self, machine):
        super().__init__(machine)
        self.machine = machine
        self.seen = None

    def on_interruption(self, event):
        self.seen = (event.vector, event.kind, event.ip, event.length, event.error_code)
        self.machine.request_stop(Stop(StopKind.HALTED, "recorded", event.ip))


def first_interruption(build, body: str):
    run = boot_native(bare(build, """
    mov $0x7fffffff, %eax
    add $1, %eax                # OF set, for into
    mov $0x2a0b, %bx            # a selector past the GDT's limit
    .globl the_insn, after
the_insn:
""" + body + "\nafter:\n    jmp .\n"))
    recorder = Recorder(run.machine)
    run.machine.attach(recorder)
    run.machine.run_slice(100)
    return recorder.seen, run.guest


@pytest.mark.parametrize("body, vector, length", [
    ("    int $0x40", 0x40, 2), ("    int3", 3, 1),
    ("    .byte 0xcd, 3  # int $3, which GNU as writes as int3", 3, 2),
    ("    into", 4, 1), ("    int $13", 13, 2), ("    int $14", 14, 2)])
def test_a_software_interrupt_returns_after_its_instruction(build, body, vector, length):
    seen, guest = first_interruption(build, body)
    assert seen == (vector, Kind.SOFTWARE, guest["after"], length, None)


def test_a_fault_returns_to_itself_with_its_error_code(build):
    seen, guest = first_interruption(build, "    mov %bx, %ds")
    assert seen == (13, Kind.EXCEPTION, guest["the_insn"], 0, 0x2A08)


def test_an_invalid_opcode_is_a_ud_fault_without_error_code(build):
    seen, guest = first_interruption(build, "    ud2")
    assert seen == (6, Kind.EXCEPTION, guest["the_insn"], 0, None)


def test_a_fault_at_address_0_is_a_fault_though_the_bytes_before_it_are_nowhere(build):
    """Telling `int n` from a fault reads the two bytes before EIP: at 0 they wrap to
    4 GiB - 2, where there is no memory. That is a fault all the same, not an error of
    pvtool's (found by the image fuzzer)."""
    run = boot_native(bare(build, "    jmp ."))
    run.machine.memory.write_phys(0, bytes.fromhex("8edb"))  # mov %bx, %ds
    run.machine.cpu.write(C.EBX, 0x2A0B)
    run.machine.cpu.write(C.EIP, 0)
    recorder = Recorder(run.machine)
    run.machine.attach(recorder)
    run.machine.run_slice(10)
    assert recorder.seen == (13, Kind.EXCEPTION, 0, 0, 0x2A08)


def test_a_fault_after_the_bytes_of_int_n_is_still_a_fault(build):
    """Which raised the vector is the CPU's record (QEMU's exception_is_int), not the
    bytes before EIP: a #GP on an instruction that follows the bytes of `int $13`
    (data jumped over) is a fault, returning to itself."""
    seen, guest = first_interruption(build, """    jmp 1f
    .byte 0xcd, 13  # int $13, never executed
1:  mov %bx, %ds""")
    assert seen == (13, Kind.EXCEPTION, guest["after"] - 2, 0, 0x2A08)


def test_a_fault_is_told_and_acknowledged_without_a_context_save(build):
    """The exception path reads the CPU's state in place: no context save or restore
    (each about two empty hooks) between the hook and the supervisor."""
    run = boot_native(bare(build, """
    mov $0x2a0b, %bx
    .globl the_insn
the_insn:
    mov %bx, %ds
    jmp ."""))
    assert run.machine.cpu.ip  # the state in place is found once (a save): before the run
    for name in ("context_save", "context_update", "context_restore"):
        setattr(run.machine.uc, name, lambda *args, name=name: pytest.fail(name))
    recorder = Recorder(run.machine)
    run.machine.attach(recorder)
    run.machine.run_slice(100)
    assert recorder.seen == (13, Kind.EXCEPTION, run.guest["the_insn"], 0, 0x2A08)
