"""The delivery mechanism's shapes (machine/delivery.py), for both widths: the frame
the handler finds and the IDT gates it reads. Delivery itself is proven by real guests
against QEMU in test_interrupts.py."""

import struct

import pytest

from pvtool.machine.delivery import DeliveryFault, Frame, read_idt_gate
from pvtool.x86.descriptors import GateDescriptor, SystemType


def test_a_same_ring_32_bit_frame_is_eip_cs_eflags_below_the_stack():
    sp, data = Frame(ip=0x1234, cs=0x08, flags=0x202).push_onto(0x9000, 32)
    assert sp == 0x9000 - 12
    assert data == struct.pack("<3I", 0x1234, 0x08, 0x202)


def test_a_ring_change_pushes_the_old_stack_and_the_error_code_goes_first():
    frame = Frame(ip=0x1234, cs=0x1B, flags=0x202, error_code=0x10, sp=0x7000, ss=0x23)
    sp, data = frame.push_onto(0x9000, 32)
    assert sp == 0x9000 - 24
    assert data == struct.pack("<6I", 0x10, 0x1234, 0x1B, 0x202, 0x7000, 0x23)


def test_a_64_bit_frame_has_8_byte_slots_from_a_16_byte_aligned_stack():
    """SDM Vol. 3A, 6.14.2: RSP is aligned to 16 before SS:RSP, RFLAGS, CS:RIP and
    the error code are pushed, SS:RSP always."""
    frame = Frame(ip=0xFFFF_8000_0000_1000, cs=0x10, flags=0x2, error_code=0,
                  sp=0x7FF8, ss=0x18)
    sp, data = frame.push_onto(0x9008, 64)
    assert sp == 0x9000 - 6 * 8
    assert data == struct.pack("<6Q", 0, 0xFFFF_8000_0000_1000, 0x10, 0x2, 0x7FF8, 0x18)


def idt(*gates: bytes) -> callable:
    table = b"".join(gates)
    return lambda address, size: table[address:address + size]


@pytest.mark.parametrize("bits", [32, 64])
def test_an_interrupt_gate_clears_if_and_a_trap_gate_does_not(bits):
    encode = GateDescriptor.encode64 if bits == 64 else GateDescriptor.encode
    offset = 0xFFFF_8000_0000_2000 if bits == 64 else 0x2000
    read = idt(encode(GateDescriptor(0x08, offset, SystemType.INTERRUPT_GATE, dpl=3)),
               encode(GateDescriptor(0x08, offset, SystemType.TRAP_GATE)))
    size = 16 if bits == 64 else 8
    first = read_idt_gate(read, 0, 2 * size - 1, 0, bits)
    second = read_idt_gate(read, 0, 2 * size - 1, 1, bits)
    assert (first.offset, first.dpl, first.clears_if) == (offset, 3, True)
    assert (second.offset, second.dpl, second.clears_if) == (offset, 0, False)


def test_a_gate_past_the_limit_or_not_a_gate_is_gp_with_the_idt_error_code():
    read = idt(GateDescriptor(0x08, 0x2000, SystemType.CALL_GATE).encode())
    with pytest.raises(DeliveryFault) as past:
        read_idt_gate(read, 0, 6, 0)  # the limit does not cover the whole gate
    with pytest.raises(DeliveryFault) as call_gate:
        read_idt_gate(read, 0, 7, 0)
    assert (past.value.vector, past.value.error_code) == (13, 2)
    assert (call_gate.value.vector, call_gate.value.error_code) == (13, 2)
