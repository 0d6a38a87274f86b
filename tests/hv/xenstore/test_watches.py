"""Watches (docs/misc/xenstore.txt): a watch fires once when set, then for every change
at or below its path, whoever makes it: the guest over its ring or a backend in Python."""

from pvtool.abi.xs_wire import XsType
from pvtool.hv.xenstore.toolstack import vbd_backend, vbd_frontend
from pvtool.hv.xenstore.wire import Message


def event(path: bytes, token: bytes) -> Message:
    return Message(XsType.watch_event, 0, 0, path + b"\0" + token + b"\0")


def test_a_new_watch_is_acked_then_fires_once_with_its_own_path(guest):
    assert guest.request(XsType.watch, b"device\0tok\0") == [
        Message(XsType.watch, 7, 0, b"OK\0"), event(b"device", b"tok")]


def test_an_absolute_watch_reports_absolute_paths(guest):
    guest.request(XsType.watch, b"/local/domain/1/data\0abs\0")
    assert guest.request(XsType.write, b"data/x\0v") == [
        event(b"/local/domain/1/data/x", b"abs"), Message(XsType.write, 7, 0, b"OK\0")]


def test_a_guest_write_below_the_path_fires_before_the_ack(guest):
    guest.request(XsType.watch, b"data/a\0w\0")
    assert guest.request(XsType.write, b"data/a/b\0v") == [
        event(b"data/a/b", b"w"), Message(XsType.write, 7, 0, b"OK\0")]
    assert guest.request(XsType.write, b"data/ab\0v") == [  # a sibling, not below
        Message(XsType.write, 7, 0, b"OK\0")]


def test_a_backend_write_fires_the_guests_watch(guest, dom0):
    state = vbd_backend() + "/state"
    guest.request(XsType.watch, state.encode() + b"\0be\0")
    dom0.write(state, b"2")
    assert guest.receive() == [event(state.encode(), b"be")]


def test_a_guest_write_runs_the_backends_callback_after_the_reply(guest, dom0):
    seen = []
    dom0.watch(vbd_frontend(), seen.append)
    assert seen == [vbd_frontend()]
    answers = guest.request(XsType.write, b"device/vbd/51712/state\0" b"3")
    assert answers == [Message(XsType.write, 7, 0, b"OK\0")]
    assert seen == [vbd_frontend(), vbd_frontend() + "/state"]


def test_a_backend_can_follow_the_frontend_state_and_answer_in_its_callback(guest, dom0):
    """The handshake's first steps (io/xenbus.h): the backend answers a frontend at
    Initialised (3) by going Connected (4); the guest's watch sees both."""
    def frontend_changed(path):
        if dom0.read(vbd_frontend() + "/state") == b"3":
            dom0.write(vbd_backend() + "/state", b"4")

    dom0.watch(vbd_frontend() + "/state", frontend_changed)
    guest.request(XsType.watch, vbd_backend().encode() + b"/state\0bs\0")
    answers = guest.request(XsType.write, b"device/vbd/51712/state\0" b"3")
    assert answers[-1] == event(vbd_backend().encode() + b"/state", b"bs")
    assert dom0.read(vbd_backend() + "/state") == b"4"


def test_removing_a_node_fires_the_watches_below_it_with_their_own_paths(guest):
    guest.request(XsType.write, b"data/a/b/c\0v")
    guest.request(XsType.watch, b"data/a/b\0below\0")
    guest.request(XsType.watch, b"data\0above\0")
    answers = guest.request(XsType.rm, b"data/a\0")
    assert answers[:2] == [event(b"data/a/b", b"below"), event(b"data/a", b"above")]


def test_unwatch_stops_the_events_and_a_duplicate_watch_is_eexist(guest):
    guest.request(XsType.watch, b"data\0w\0")
    assert guest.request(XsType.watch, b"data\0w\0")[0].payload == b"EEXIST\0"
    assert guest.request(XsType.unwatch, b"data\0w\0")[0].payload == b"OK\0"
    assert guest.request(XsType.write, b"data/x\0v") == [Message(XsType.write, 7, 0, b"OK\0")]


def test_a_special_watch_fires_once_when_set(guest):
    assert guest.request(XsType.watch, b"@releaseDomain\0r\0")[1] == event(
        b"@releaseDomain", b"r")


def test_watches_past_the_quota_are_e2big(guest):
    for i in range(128):
        guest.request(XsType.watch, b"data\0t%d\0" % i)
    assert guest.request(XsType.watch, b"data\0one-more\0")[0].payload == b"E2BIG\0"
