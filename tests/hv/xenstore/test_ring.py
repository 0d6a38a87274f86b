"""The store ring (docs/misc/xenstore-ring.txt): free-running indexes wrapping around
the page and the u32 range, messages longer than the ring in both directions, replies
waiting while rsp[] is full, signals on every index move, and the connection closed
with its reason for an oversized message or inconsistent indexes."""

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvtool.abi.xs_wire import (
    XENSTORE_PAYLOAD_MAX,
    XENSTORE_RING_SIZE,
    XENSTORE_SERVER_FEATURE_ERROR,
    XenstoreRingError,
    XsType,
)
from pvtool.hv.xenstore.ring import MAX_QUEUED_OUTPUT
from pvtool.hv.xenstore.wire import HEADER_SIZE, Message
from tests.hv.xenstore.guestside import GuestSide


def test_the_daemon_advertises_the_error_field(guest):
    assert guest.peek("server_features") == XENSTORE_SERVER_FEATURE_ERROR
    assert guest.peek("error") == XenstoreRingError.none


@pytest.mark.parametrize("start", [0, 1000, 0xFFFFFF00, 0xFFFFFFFF])
def test_indexes_wrap_around_the_ring_and_the_u32_range(store, start):
    guest = GuestSide(store, start=start)
    for i in range(40):  # 40 round trips: past 1024 bytes and past 2**32
        value = b"v%02d" % i
        assert guest.request(XsType.write, b"data/k\0" + value)[0].payload == b"OK\0"
        assert guest.request(XsType.read, b"data/k\0", req_id=i) == [
            Message(XsType.read, i, 0, value)]
    assert guest.peek("req_cons") == guest.peek("req_prod") != start
    assert guest.peek("rsp_cons") == guest.peek("rsp_prod") != start


def test_a_request_longer_than_the_ring_arrives_in_pieces(guest):
    value = bytes(range(256)) * 7  # 1,792 bytes: under the entry quota, over the ring
    assert guest.request(XsType.write, b"data/long\0" + value)[0].payload == b"OK\0"
    assert guest.request(XsType.read, b"data/long\0")[0].payload == value


def test_a_reply_longer_than_the_ring_waits_for_room(guest, dom0):
    value = b"x" * 3000
    dom0.write("/local/domain/1/data/big", value)
    guest.send(Message(XsType.read, 5, 0, b"data/big\0").encode())
    assert guest.peek("rsp_prod") - guest.peek("rsp_cons") == XENSTORE_RING_SIZE
    assert len(guest.ring.output) == HEADER_SIZE + 3000 - XENSTORE_RING_SIZE
    assert guest.receive() == [Message(XsType.read, 5, 0, value)]
    assert not guest.ring.output


def test_every_index_move_is_signalled(guest):
    guest.send(Message(XsType.read, 1, 0, b"name\0").encode()[:5])
    assert guest.signals == 1  # req_cons moved, no reply yet
    guest.send(Message(XsType.read, 1, 0, b"name\0").encode()[5:])
    assert guest.signals == 3  # req_cons again, then rsp_prod


def test_an_oversized_message_closes_the_connection_with_a_protocol_error(guest):
    guest.send(struct.pack("<IIII", XsType.write, 1, 0, XENSTORE_PAYLOAD_MAX + 1))
    assert guest.peek("error") == XenstoreRingError.proto
    assert guest.ring.closed is XenstoreRingError.proto
    guest.send(Message(XsType.read, 2, 0, b"name\0").encode())
    assert guest.receive() == []  # no longer served


def test_indexes_more_than_a_ring_apart_close_the_connection(guest):
    guest.poke("req_prod", XENSTORE_RING_SIZE + 1)
    guest.ring.notify()
    assert guest.peek("error") == XenstoreRingError.ringidx


def test_a_corrupt_response_index_closes_the_connection(guest):
    guest.poke("rsp_cons", 0x80000000)
    guest.send(Message(XsType.read, 2, 0, b"name\0").encode())
    assert guest.peek("error") == XenstoreRingError.ringidx


def test_a_guest_that_never_reads_its_replies_stops_being_served(guest):
    request = Message(XsType.get_domain_path, 1, 0, b"1\0").encode()
    sent = 0
    while guest.send(request):  # requests, and never a reply read
        sent += 1
    assert guest.full() and sent < 2000
    assert len(guest.ring.output) <= MAX_QUEUED_OUTPUT + HEADER_SIZE + XENSTORE_PAYLOAD_MAX
    replies = guest.receive()  # it reads them at last: each request is answered
    assert [m.payload for m in replies] == [b"/local/domain/1\0"] * len(replies)
    assert len(replies) >= sent


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=8),
       start=st.integers(0, 0xFFFFFFFF))
def test_fuzzed_streams_get_replies_or_a_closed_ring_never_an_exception(stream, cuts, start):
    """Garbage cut anywhere: the page is the only memory touched (PageMemory checks
    every access), and every reply the daemon sends is a well-formed message."""
    guest = GuestSide(start=start)
    pieces = [stream[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(stream)],
                                          strict=True)]
    for piece in pieces:
        guest.send(piece)
    for message in guest.receive():
        assert len(message.payload) <= XENSTORE_PAYLOAD_MAX
    assert guest.ring.closed in (None, XenstoreRingError.proto)


@settings(max_examples=200, deadline=None)
@given(req_cons=st.integers(0, 0xFFFFFFFF), req_prod=st.integers(0, 0xFFFFFFFF),
       rsp_cons=st.integers(0, 0xFFFFFFFF), rsp_prod=st.integers(0, 0xFFFFFFFF),
       junk=st.binary(min_size=XENSTORE_RING_SIZE, max_size=XENSTORE_RING_SIZE))
def test_fuzzed_indexes_never_reach_outside_the_page(req_cons, req_prod, rsp_cons, rsp_prod,
                                                     junk):
    guest = GuestSide()
    guest.memory.page[:XENSTORE_RING_SIZE] = junk
    for name, value in (("req_cons", req_cons), ("req_prod", req_prod),
                        ("rsp_cons", rsp_cons), ("rsp_prod", rsp_prod)):
        guest.poke(name, value)
    guest.ring.notify()
    guest.ring.flush()
