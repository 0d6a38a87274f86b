"""Hypothesis drives the daemon with well-framed requests of every type, made of
plausible and implausible pieces: each gets exactly one reply echoing its req_id and
tx_id (a WATCH also its first event), and the tree stays whole."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvtool.abi.xs_wire import XENSTORE_PAYLOAD_MAX, XS_ERRORS, XsType
from pvtool.hv.xenstore import paths
from tests.hv.xenstore.guestside import GuestSide

PIECES = st.sampled_from([b"data", b"data/a", b"/local/domain/1/data/b", b"name", b"/vm",
                          b"device/vbd/51712/state", b"@releaseDomain", b"T", b"F", b"1",
                          b"n1", b"r0", b"", b"bad path", b"/", b"\xff", b"x" * 2100])
PAYLOADS = st.one_of(st.binary(max_size=64),
                     st.lists(PIECES, max_size=4).map(lambda p: b"\0".join(p) + b"\0"))
REQUESTS = st.lists(st.tuples(st.sampled_from([*range(28), 0xFFFF]),
                              PAYLOADS.filter(lambda p: len(p) <= XENSTORE_PAYLOAD_MAX),
                              st.sampled_from([0, 0, 1, 2, 3, 0xFFFFFFFF])), max_size=25)


def assert_whole(tree) -> None:
    for path, node in tree.nodes.items():
        for child in node.children:
            assert f"{path.rstrip('/')}/{child}" in tree.nodes
        if path != "/":
            assert paths.basename(path) in tree.nodes[paths.parent(path)].children


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(requests=REQUESTS)
def test_every_request_gets_one_reply_with_its_ids(store, requests):
    guest = GuestSide(store)
    for number, (kind, payload, tx_id) in enumerate(requests, start=1):
        answers = guest.request(kind, payload, req_id=number, tx_id=tx_id)
        replies = [m for m in answers if m.type != XsType.watch_event]
        assert len(replies) == 1, answers
        (reply,) = replies
        assert (reply.req_id, reply.tx_id) == (number, tx_id)
        assert reply.type in (kind, XsType.error)
        if reply.type == XsType.error:
            assert reply.payload[:-1].decode() in XS_ERRORS
    assert_whole(store.tree)
    assert guest.ring.closed is None
