"""Segment and gate descriptors and pseudo-descriptors encode and decode exactly."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pvtool.x86.descriptors import (
    CODE_RX,
    DATA_RW,
    GateDescriptor,
    PseudoDescriptor,
    SegmentDescriptor,
    SystemType,
    gdt_offset,
    selector,
    selector_fields,
)

FLAT_CODE = 0x00CF9A000000FFFF  # Linux's GDT_ENTRY(0xc09a, 0, 0xfffff)
FLAT_DATA = 0x00CF92000000FFFF


def test_flat_ring0_segments_match_the_classic_values():
    code = SegmentDescriptor.flat(CODE_RX)
    data = SegmentDescriptor.flat(DATA_RW)
    assert code.to_int() == FLAT_CODE and data.to_int() == FLAT_DATA
    assert code.encode() == FLAT_CODE.to_bytes(8, "little")
    assert code.byte_limit == 0xFFFF_FFFF and code.granularity and code.is_code
    assert not data.is_code and not data.is_system


def test_decode_splits_base_and_limit():
    d = SegmentDescriptor.decode(bytes.fromhex("ffff0000409acf12"))
    assert (d.base, d.limit, d.type, d.dpl, d.present) == (0x12400000, 0xFFFFF, 0xA, 0, True)
    assert (d.db, d.long, d.granularity, d.s) == (True, False, True, True)
    ring1 = SegmentDescriptor.decode(0x00CFBA000000FFFF)
    assert ring1.dpl == 1 and ring1.is_code


def test_a_tss_descriptor_is_a_byte_granular_system_segment():
    tss = SegmentDescriptor.flat(SystemType.TSS_AVAILABLE, base=0x1234_5678, byte_limit=103,
                                 s=False, db=False)  # fmt: skip
    assert tss.to_int() == 0x12008934_56780067
    assert tss.is_system and not tss.granularity and tss.byte_limit == 103
    assert SegmentDescriptor.decode(tss.encode()) == tss


def test_64_bit_code_segment_has_l_and_not_d():
    code64 = SegmentDescriptor.flat(CODE_RX, long=True, db=False)
    assert code64.to_int() == 0x00AF9A000000FFFF


def test_flat_refuses_a_page_granular_limit_that_is_not_page_aligned():
    with pytest.raises(ValueError, match="0xfff"):
        SegmentDescriptor.flat(DATA_RW, byte_limit=0x12_3456)


def test_out_of_range_fields_are_refused():
    with pytest.raises(ValueError, match="dpl"):
        SegmentDescriptor(dpl=4).encode()
    with pytest.raises(ValueError, match="limit"):
        SegmentDescriptor(limit=1 << 20).encode()
    with pytest.raises(ValueError, match="not a gate"):
        GateDescriptor(8, 0, type=SystemType.LDT).encode()


def test_interrupt_gate_layout():
    gate = GateDescriptor(selector=0x08, offset=0x12345678, type=SystemType.INTERRUPT_GATE)
    assert gate.encode() == bytes.fromhex("7856080000 8e3412".replace(" ", ""))
    user_trap = GateDescriptor(0x10, 0xC0101000, SystemType.TRAP_GATE, dpl=3)
    assert user_trap.encode()[5] == 0xEF


def test_call_gate_carries_a_parameter_count_and_task_gate_a_tss_selector():
    call = GateDescriptor(0x08, 0x1000, SystemType.CALL_GATE, dpl=3, param_count=2)
    assert call.encode()[4] == 2 and GateDescriptor.decode(call.encode()) == call
    task = GateDescriptor(0x28, 0, SystemType.TASK_GATE)
    assert task.encode() == bytes.fromhex("0000280000850000")


def test_64_bit_gate_has_the_high_offset_and_ist():
    gate = GateDescriptor(0x10, 0xFFFF_FFFF_8010_2030, SystemType.INTERRUPT_GATE, ist=2)
    raw = gate.encode64()
    assert raw == bytes.fromhex("3020100002 8e1080 ffffffff 00000000".replace(" ", ""))
    assert GateDescriptor.decode(raw) == gate
    with pytest.raises(ValueError, match="offset"):
        gate.encode()  # a 64-bit offset does not fit a 32-bit gate


def test_pseudo_descriptor_is_limit_then_base():
    assert PseudoDescriptor(0x17, 0x1000).encode() == bytes.fromhex("170000100000")
    wide = PseudoDescriptor(0xFFF, 0xFFFF_8000_0000_1000)
    assert len(wide.encode(64)) == 10
    assert PseudoDescriptor.decode(wide.encode(64), 64) == wide
    with pytest.raises(ValueError, match="6 bytes"):
        PseudoDescriptor.decode(b"\x17\x00\x00", 32)


def test_selectors():
    assert selector(1) == 0x08 and selector(5, rpl=3) == 0x2B
    assert selector(2, ldt=True, rpl=1) == 0x15
    assert selector_fields(0xE019) == (0xE019 >> 3, False, 1)  # Xen's FLAT_RING1_CS


def test_a_selector_names_a_gdt_descriptor_only_if_all_8_bytes_are_within_the_limit():
    assert gdt_offset(0x1B, 0x1F) == 0x18  # the RPL does not move it
    assert gdt_offset(0x18, 0x1E) is None  # one byte short: #GP
    assert gdt_offset(0x03, 0xFFFF) is None  # the null selector, whatever its RPL
    assert gdt_offset(0x1C, 0xFFFF) is None  # TI set: the LDT, not the GDT


bits = st.booleans()


@given(base=st.integers(0, 2**32 - 1), limit=st.integers(0, 2**20 - 1),
       type_=st.integers(0, 15), dpl=st.integers(0, 3), s=bits, p=bits, db=bits,
       long=bits, g=bits, avl=bits)  # fmt: skip
def test_segment_descriptor_round_trip(base, limit, type_, dpl, s, p, db, long, g, avl):
    d = SegmentDescriptor(base, limit, type_, s, dpl, p, db, long, g, avl)
    assert SegmentDescriptor.decode(d.encode()) == d
    assert SegmentDescriptor.decode(d.to_int()) == d


gate_types = st.sampled_from([SystemType.INTERRUPT_GATE, SystemType.TRAP_GATE,
                              SystemType.INTERRUPT_GATE16, SystemType.TRAP_GATE16])  # fmt: skip


@given(sel=st.integers(0, 0xFFFF), offset=st.integers(0, 2**32 - 1), type_=gate_types,
       dpl=st.integers(0, 3), p=bits)  # fmt: skip
def test_gate_round_trip(sel, offset, type_, dpl, p):
    gate = GateDescriptor(sel, offset, type_, dpl, p)
    assert GateDescriptor.decode(gate.encode()) == gate


@given(sel=st.integers(0, 0xFFFF), offset=st.integers(0, 2**64 - 1), type_=gate_types,
       dpl=st.integers(0, 3), ist=st.integers(0, 7))  # fmt: skip
def test_gate64_round_trip(sel, offset, type_, dpl, ist):
    gate = GateDescriptor(sel, offset, type_, dpl, ist=ist)
    assert GateDescriptor.decode(gate.encode64()) == gate


@given(limit=st.integers(0, 0xFFFF), base=st.integers(0, 2**32 - 1))
def test_pseudo_descriptor_round_trip(limit, base):
    pseudo = PseudoDescriptor(limit, base)
    assert PseudoDescriptor.decode(pseudo.encode()) == pseudo
