"""Transactions (docs/misc/xenstore.txt, xenstored_transaction.c): a transaction sees
its own writes, nobody else does until it commits; a conflicting change made meanwhile
makes the commit EAGAIN; an abort leaves no trace; watches fire at the commit."""

import pytest

from pvtool.abi.xs_wire import XsType
from pvtool.hv.xenstore.errors import XenStoreError
from pvtool.hv.xenstore.wire import Message


def start(guest) -> int:
    (answer,) = guest.request(XsType.transaction_start, b"\0")
    assert answer.type == XsType.transaction_start and answer.payload.endswith(b"\0")
    return int(answer.payload[:-1])


def payloads(guest, kind, payload, tx_id=0) -> list[bytes]:
    return [m.payload for m in guest.request(kind, payload, tx_id=tx_id)]


def test_a_transaction_sees_its_own_writes_and_others_see_them_at_commit(guest):
    tx = start(guest)
    assert guest.request(XsType.write, b"data/x\0new", tx_id=tx) == [
        Message(XsType.write, 7, tx, b"OK\0")]
    assert payloads(guest, XsType.read, b"data/x\0", tx) == [b"new"]
    assert payloads(guest, XsType.read, b"data/x\0") == [b"ENOENT\0"]
    assert payloads(guest, XsType.transaction_end, b"T\0", tx) == [b"OK\0"]
    assert payloads(guest, XsType.read, b"data/x\0") == [b"new"]


def test_an_aborted_transaction_leaves_nothing(guest):
    tx = start(guest)
    guest.request(XsType.write, b"data/x\0v", tx_id=tx)
    guest.request(XsType.rm, b"name\0", tx_id=tx)
    assert payloads(guest, XsType.transaction_end, b"F\0", tx) == [b"OK\0"]
    assert payloads(guest, XsType.read, b"data/x\0") == [b"ENOENT\0"]
    assert payloads(guest, XsType.read, b"name\0") == [b"guest"]
    assert payloads(guest, XsType.read, b"name\0", tx) == [b"ENOENT\0"]  # it is gone


def test_a_change_to_what_the_transaction_read_makes_the_commit_eagain(guest, dom0):
    tx = start(guest)
    guest.request(XsType.read, b"name\0", tx_id=tx)
    guest.request(XsType.write, b"data/x\0mine", tx_id=tx)
    dom0.write("/local/domain/1/name", b"other")
    assert payloads(guest, XsType.transaction_end, b"T\0", tx) == [b"EAGAIN\0"]
    assert payloads(guest, XsType.read, b"data/x\0") == [b"ENOENT\0"]


def test_changes_elsewhere_do_not_conflict(guest, dom0):
    tx = start(guest)
    guest.request(XsType.write, b"data/x\0mine", tx_id=tx)
    dom0.write("/local/domain/1/memory/target", b"1024")
    assert payloads(guest, XsType.transaction_end, b"T\0", tx) == [b"OK\0"]
    assert dom0.read("/local/domain/1/memory/target") == b"1024"
    assert dom0.read("/local/domain/1/data/x") == b"mine"


def test_two_transactions_making_the_same_node_the_second_commit_is_eagain(guest):
    first, second = start(guest), start(guest)
    guest.request(XsType.write, b"data/x\0one", tx_id=first)
    guest.request(XsType.write, b"data/x\0two", tx_id=second)
    assert payloads(guest, XsType.transaction_end, b"T\0", first) == [b"OK\0"]
    assert payloads(guest, XsType.transaction_end, b"T\0", second) == [b"EAGAIN\0"]
    assert payloads(guest, XsType.read, b"data/x\0") == [b"one"]


def test_watches_fire_at_the_commit_not_before(guest):
    guest.request(XsType.watch, b"data\0w\0")
    tx = start(guest)
    assert len(guest.request(XsType.write, b"data/x\0v", tx_id=tx)) == 1  # no event yet
    answers = guest.request(XsType.transaction_end, b"T\0", tx_id=tx)
    assert [m.type for m in answers] == [XsType.watch_event, XsType.transaction_end]
    assert answers[0].payload == b"data/x\0w\0"


def test_transaction_rules(guest):
    tx = start(guest)
    assert payloads(guest, XsType.transaction_start, b"\0", tx) == [b"EBUSY\0"]
    assert payloads(guest, XsType.transaction_end, b"X\0", tx) == [b"EINVAL\0"]
    for _ in range(9):
        start(guest)
    assert payloads(guest, XsType.transaction_start, b"\0") == [b"ENOSPC\0"]


def test_a_backend_transaction_commits_at_the_end_of_its_block(dom0):
    with dom0.transaction():
        dom0.write("/local/domain/1/data/y", b"v")
    assert dom0.read("/local/domain/1/data/y") == b"v"
    with pytest.raises(KeyError), dom0.transaction():
        dom0.write("/local/domain/1/data/z", b"v")
        raise KeyError("aborts")
    with pytest.raises(XenStoreError) as error:
        dom0.read("/local/domain/1/data/z")
    assert error.value.name == "ENOENT"
