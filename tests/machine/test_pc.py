"""machine/pc.py: the hooks the machine owns and how a slice ends."""

import pytest

from pvtool.image.elf import load_elf
from pvtool.machine import cpu as C
from pvtool.machine.loader import load_multiboot
from pvtool.machine.native import BareMetal
from pvtool.machine.pc import MAX_RAM, Machine
from pvtool.machine.stop import Stop, StopKind
from tests.machine.harness import boot_native

BARE = """
    .text
    .long 0x1BADB002, 0x3, -(0x1BADB002 + 0x3)
    .globl _start
_start:
{body}
"""


def bare(build, body: str):
    return build(BARE.format(body=body), runtime=False)


def test_every_in_and_out_is_counted_as_an_io_exit(build):
    run = boot_native(bare(build, """
    mov $0x3f8, %dx
    mov $'x', %al
    out %al, %dx
    out %al, %dx
    add $5, %dx
    in %dx, %al
    mov $0xf4, %dx
    out %al, %dx
"""))
    run.machine.run_slice(1000)

    assert run.machine.exits["io"] == 4
    assert run.output == b"xx"
    assert run.stop.kind is StopKind.GUEST_EXIT
    assert run.stop.code == 0x60  # the LSR value the guest read and wrote back


@pytest.mark.parametrize("insn, size", [("out %al, %dx", 1), ("in %dx, %eax", 4),
                                         ("rep outsw", 2), ("rep insb", 1)])
def test_a_denied_port_access_is_a_gp_0_on_the_instruction_that_changes_nothing(
        build, insn, size):
    """The supervisor refuses: the CPU raises #GP(0) with EIP on the instruction (as
    without I/O privilege), the registers it would change are as they were, and the
    device never sees the access."""
    run = boot_native(bare(build, f"""
    mov $0x3f8, %dx
    mov $0x5a5a5a5a, %eax
    mov $0x1000, %esi
    mov $0x2000, %edi
    mov $3, %ecx
    {insn}
"""))
    events = []

    class Denying(BareMetal):
        all_ports_allowed = False  # the bare PC's shortcut would never ask port_allowed

        def port_allowed(self, port, size):
            events.append(("port", port, size))
            return False

        def on_interruption(self, event):
            events.append((event.vector, event.error_code, event.ip))
            self.machine.request_stop(Stop(StopKind.CRASH, "refused", event.ip))

    run.machine.attach(Denying(run.machine))
    start = run.machine.cpu.ip
    run.machine.run_slice(1000)

    insn_at = start + 4 + 4 * 5  # past `mov $0x3f8, %dx` (66 ba imm16) and four mov imm32
    cpu = run.machine.cpu
    assert events == [("port", 0x3F8, size), (13, 0, insn_at)]
    assert cpu.ip == insn_at
    assert run.output == b""
    assert [cpu.read(r) for r in (C.EAX, C.ECX, C.ESI, C.EDI)] == [0x5A5A5A5A, 3, 0x1000,
                                                                    0x2000]


def test_a_python_error_in_a_supervisor_comes_out_of_run_slice(build):
    run = boot_native(bare(build, "    int $0x30\n    hlt\n"))

    class Broken(BareMetal):
        def on_interruption(self, event):
            raise RuntimeError(f"handler bug at vector {event.vector:#x}")

    run.machine.attach(Broken(run.machine))
    with pytest.raises(RuntimeError, match="vector 0x30"):
        run.machine.run_slice(1000)
    assert run.machine.hook_error is None  # reported once, not again next slice


def test_a_python_error_in_a_port_device_comes_out_of_run_slice(build):
    guest = bare(build, "    mov $0x3f8, %dx\n    out %al, %dx\n    hlt\n")

    def broken_output(data):
        raise OSError("stdout closed")

    machine = Machine(output=broken_output)
    load_multiboot(machine, load_elf(guest.elf))
    machine.attach(BareMetal(machine))
    with pytest.raises(OSError, match="stdout closed"):
        machine.run_slice(1000)


def test_fetching_outside_ram_is_an_emulator_error_stop_at_that_eip(build):
    run = boot_native(bare(build, "    jmp *%eax\n"), ram_mib=16)
    run.machine.cpu.write(C.EAX, 0x0200_0000)  # 32 MiB: past the end of RAM

    run.machine.run_slice(1000)

    assert run.stop.kind is StopKind.EMULATOR_ERROR
    assert run.stop.ip == 0x0200_0000
    assert "UNMAPPED" in run.stop.reason


def test_hlt_ends_the_slice_early_with_eip_after_it_and_no_stop(build):
    guest = bare(build, "    cli\n    .globl the_hlt\nthe_hlt:\n    hlt\n    jmp the_hlt\n")
    run = boot_native(guest)

    run.machine.run_slice(1000)

    assert run.stop is None
    assert run.machine.cpu.read(C.EIP) == guest["the_hlt"] + 1


def test_the_first_stop_reason_wins(build):
    run = boot_native(bare(build, "    hlt\n"))
    first = Stop(StopKind.TRIPLE_FAULT, "first", 1)
    run.machine.request_stop(first)
    run.machine.request_stop(Stop(StopKind.GUEST_EXIT, "second", 2, 0))
    assert run.stop is first


def test_the_pit_reaches_the_cpu_through_the_io_apics_input_2_not_the_8259():
    machine = Machine(output=lambda data: None)
    machine.lapic.write(0x350, 4, 0x18700)  # LINT0 masked: the 8259 is cut off
    machine.ioapic.write(0x00, 4, 0x10 + 2 * 2)
    machine.ioapic.write(0x10, 4, 0x30)  # input 2: vector 0x30, physical APIC 0
    machine.irqs.pulse(0)
    assert machine.irqs.pending() and machine.irqs.acknowledge() == 0x30
    assert machine.pic.master.irr & 1  # the 8259 saw the edge too, held back by LINT0


def test_the_uarts_interrupt_is_isa_irq_4_on_both_controllers():
    machine = Machine(output=lambda data: None)
    machine.ioapic.write(0x00, 4, 0x10 + 2 * 4)
    machine.ioapic.write(0x10, 4, 0x34)
    machine.uart.write(1, 1, 0x02)  # THR empty interrupts
    assert machine.pic.master.irr & 1 << 4
    machine.lapic.write(0x350, 4, 0x18700)
    assert machine.irqs.acknowledge() == 0x34


@pytest.mark.parametrize(("address", "noted"), [
    (0x400000, True),  # the first byte past 4 MiB
    (0x3FFFFF, False),  # RAM
    (MAX_RAM, False),  # where no --memory puts RAM: a higher-half kernel's addresses
    (None, False),  # a stop that came from no fault
])
def test_a_fault_past_the_ram_says_so(build, address, noted):
    run = boot_native(bare(build, "    hlt\n"), ram_mib=4)
    run.machine.request_stop(Stop(StopKind.TRIPLE_FAULT, "triple fault", 1,
                                  fault_address=address))
    note = " (0x400000 is past the 4 MiB of RAM --memory gives)"
    assert run.stop.reason == "triple fault" + (note if noted else "")
