"""The XenStore codec (io/xs_wire.h): messages put back together from a byte stream
cut at any place, headers checked against the payload limit, payloads split."""

import struct

import pytest

from pvtool.abi.xs_wire import XENSTORE_PAYLOAD_MAX, XsType
from pvtool.hv.xenstore.errors import XenStoreError
from pvtool.hv.xenstore.wire import (
    Message,
    MessageReader,
    OversizedMessage,
    path_and_value,
    split_strings,
)

MESSAGES = [
    Message(XsType.write, 1, 0, b"data/x\0value"),
    Message(XsType.read, 2, 5, b"data/x\0"),
    Message(XsType.transaction_start, 3, 0, b"\0"),
    Message(XsType.directory, 0xFFFFFFFF, 0xFFFFFFFF, b""),  # an empty payload
    Message(XsType.watch, 4, 0, b"device\0tok\0"),
]
STREAM = b"".join(m.encode() for m in MESSAGES)


def test_a_message_is_the_xsd_sockmsg_header_then_its_payload():
    encoded = Message(XsType.read, 0x11, 0x22, b"name\0").encode()
    assert encoded == struct.pack("<IIII", 2, 0x11, 0x22, 5) + b"name\0"


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_a_stream_cut_in_two_anywhere_gives_the_same_messages(cut):
    reader = MessageReader()
    assert reader.feed(STREAM[:cut]) + reader.feed(STREAM[cut:]) == MESSAGES
    assert not reader.partial


def test_a_stream_fed_byte_by_byte_gives_the_same_messages():
    reader = MessageReader()
    assert [m for i in range(len(STREAM)) for m in reader.feed(STREAM[i:i + 1])] == MESSAGES


def test_the_reader_wants_no_more_than_the_header_or_payload_under_way():
    reader = MessageReader()
    assert reader.wanted == 16
    reader.feed(MESSAGES[0].encode()[:10])
    assert reader.wanted == 6
    reader.feed(MESSAGES[0].encode()[10:16])
    assert reader.wanted == len(MESSAGES[0].payload)


def test_a_payload_of_exactly_the_maximum_is_taken():
    big = Message(XsType.write, 1, 0, b"p\0" + b"v" * (XENSTORE_PAYLOAD_MAX - 2))
    assert MessageReader().feed(big.encode()) == [big]


def test_a_header_announcing_more_than_the_maximum_is_refused_at_once():
    header = struct.pack("<IIII", XsType.write, 1, 0, XENSTORE_PAYLOAD_MAX + 1)
    reader = MessageReader()
    reader.feed(header[:15])
    with pytest.raises(OversizedMessage):
        reader.feed(header[15:])


def test_a_reply_echoes_type_req_id_and_tx_id_and_an_error_names_its_errno():
    request = Message(XsType.read, 9, 3, b"x\0")
    assert request.reply(b"v") == Message(XsType.read, 9, 3, b"v")
    assert request.error("ENOENT") == Message(XsType.error, 9, 3, b"ENOENT\0")


def test_strings_must_fill_the_payload_exactly():
    assert split_strings(b"a\0b\0", 2) == [b"a", b"b"]
    for bad in (b"a\0", b"a\0b", b"a\0b\0c\0", b""):
        with pytest.raises(XenStoreError) as error:
            split_strings(bad, 2)
        assert error.value.name == "EINVAL"


def test_a_write_payload_is_a_path_then_any_bytes_up_to_its_end():
    assert path_and_value(b"p\0v\0al\xff") == (b"p", b"v\0al\xff")
    with pytest.raises(XenStoreError):
        path_and_value(b"no-nul")
