"""machine/firmware/aml.py against the encodings of ACPI 6.5 chapter 20."""

import pytest

from pvtool.machine.firmware import aml


@pytest.mark.parametrize("content, encoded", [
    (0, b"\x01"),
    (62, b"\x3f"),  # the largest one-byte PkgLength: 63
    (63, b"\x41\x04"),  # 65 = 0x41: lead byte 0b01 << 6 | 1, then 0x04
    (0xFFD, b"\x4f\xff"),  # 0xFFF, the largest two-byte one
    (0xFFE, b"\x81\x00\x01"),  # 0x1001 needs three
])
def test_pkg_length_counts_itself_and_grows_by_the_spec(content, encoded):
    assert aml.pkg_length(content) == encoded


@pytest.mark.parametrize("value, encoded", [
    (0, b"\x00"), (1, b"\x01"), (2, b"\x0a\x02"), (0x1234, b"\x0b\x34\x12"),
    (0x030AD041, b"\x0c\x41\xd0\x0a\x03"),
])
def test_integers_take_the_shortest_encoding(value, encoded):
    assert aml.integer(value) == encoded


def test_eisa_id_compresses_as_asl_does():
    assert aml.eisa_id("PNP0A03") == 0x030AD041  # the PCI root bridge, as in Linux's tables


def test_names_pad_segments_and_keep_the_root_prefix():
    assert aml.name_string("\\_SB") == b"\\_SB_"
    assert aml.name_string("PCI0") == b"PCI0"


def test_a_device_is_an_extended_op_with_its_length_and_name():
    body = aml.name("_ADR", aml.integer(0))
    assert aml.device("PCI0", body) == b"\x5b\x82" + bytes([1 + 4 + len(body)]) + b"PCI0" + body
