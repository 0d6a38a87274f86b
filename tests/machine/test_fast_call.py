"""What the machine tells a supervisor about `syscall` and `sysenter`
(machine/fast_call.py): which one ran, where, how long it was, and that a resume
address lands exactly there, although Unicorn adds the instruction's length to RIP
after its hook (measured here in both widths)."""

import pytest

from pvtool.machine.cpu import RCX, RIP
from pvtool.machine.fast_call import FastCallKind
from pvtool.machine.native import BareMetal
from pvtool.machine.pc import Machine
from pvtool.machine.stop import Stop, StopKind
from tests.machine.harness import boot_native
from tests.machine.test_pc import bare

CODE64 = 0x10000


class Recorder(BareMetal):
    """Records each fast call, sending execution to RESUME if given."""

    def __init__(self, machine, resume=None, ask_ip=True):
        super().__init__(machine)
        self.calls = []
        self.resume = resume
        self.ask_ip = ask_ip

    def on_fast_call(self, call):
        self.calls.append((call.kind, call.ip if self.ask_ip else None,
                           call.length if self.ask_ip else None))
        call.resume = self.resume


def run32(build, body: str, **recorder):
    run = boot_native(bare(build, """
    .globl the_insn, after, target
the_insn:
""" + body + """
after:
    mov $0xf4, %dx
    mov $1, %al
    out %al, %dx
target:
    mov $0xf4, %dx
    mov $2, %al
    out %al, %dx
"""))
    recorder = Recorder(run.machine, **recorder)
    run.machine.attach(recorder)
    return run, recorder


@pytest.mark.parametrize("body, kind, length", [
    ("    syscall", FastCallKind.SYSCALL, 2),
    ("    sysenter", FastCallKind.SYSENTER, 2),
    ("    .byte 0x66, 0x0f, 0x05  # data16 syscall", FastCallKind.SYSCALL, 3),
    ("    .byte 0xf3, 0x66, 0x0f, 0x34  # rep data16 sysenter", FastCallKind.SYSENTER, 4)])
def test_a_32_bit_fast_call_reaches_the_supervisor_with_its_address_and_length(
        build, body, kind, length):
    run, recorder = run32(build, body)
    run.machine.run_slice(100)
    assert recorder.calls == [(kind, run.guest["the_insn"], length)]
    assert run.stop.code == 1  # left alone, it continues after the instruction


@pytest.mark.parametrize("body", ["    syscall", "    .byte 0xf3, 0x66, 0x0f, 0x34"])
def test_a_32_bit_resume_address_is_where_execution_continues(build, body):
    run, _ = run32(build, body)
    recorder = Recorder(run.machine, resume=run.guest["target"])
    run.machine.attach(recorder)
    run.machine.run_slice(100)
    assert run.stop.code == 2


class Stopper(Recorder):
    def on_fast_call(self, call):
        super().on_fast_call(call)
        self.machine.request_stop(Stop(StopKind.HALTED, "recorded", 0))


def machine64(code: bytes, **recorder) -> tuple[Machine, Recorder]:
    """A 64-bit machine in Unicorn's initial long mode (paging off), CODE at CODE64."""
    machine = Machine(output=lambda data: None, bits=64)
    machine.memory.write_phys(CODE64, code)
    machine.cpu.write(RIP, CODE64)
    supervisor = Stopper(machine, **recorder)
    machine.attach(supervisor)
    return machine, supervisor


@pytest.mark.parametrize("code, kind", [
    (b"\x0f\x05", FastCallKind.SYSCALL), (b"\x48\x0f\x05", FastCallKind.SYSCALL),
    (b"\x0f\x34", FastCallKind.SYSENTER), (b"\x66\x0f\x34", FastCallKind.SYSENTER)])
def test_a_64_bit_fast_call_continues_after_itself_or_at_its_resume_address(code, kind):
    machine, supervisor = machine64(code)
    machine.run_slice(1)
    assert supervisor.calls == [(kind, CODE64, len(code))]
    assert machine.cpu.read(RIP) == CODE64 + len(code)

    machine, _ = machine64(code, resume=CODE64 + 0x123)
    machine.run_slice(1)
    assert machine.cpu.read(RIP) == CODE64 + 0x123


def test_a_fast_call_left_alone_touches_no_register(build):
    """The hypercall path: nothing read, nothing written; RCX keeps its value (Unicorn's
    syscall writes neither RCX nor R11, XEN-ABI64.md 2.3)."""
    machine, supervisor = machine64(b"\x0f\x05", ask_ip=False)
    machine.cpu.write(RCX, 0x1111)
    machine.run_slice(1)
    assert supervisor.calls == [(FastCallKind.SYSCALL, None, None)]
    assert (machine.cpu.read(RIP), machine.cpu.read(RCX)) == (CODE64 + 2, 0x1111)
