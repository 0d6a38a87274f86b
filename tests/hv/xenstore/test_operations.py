"""Each XenStore request a domain sends over its ring, and the reply it gets
(docs/misc/xenstore.txt): payloads, req_id and tx_id echoed, errors by name."""

import pytest

from pvtool.abi.xs_wire import XENSTORE_PAYLOAD_MAX, XsType
from pvtool.hv.xenstore.perms import Perm
from pvtool.hv.xenstore.tree import MAX_ENTRY_SIZE
from pvtool.hv.xenstore.wire import Message


def reply(guest, kind, payload, **ids) -> Message:
    (answer,) = guest.request(kind, payload, **ids)
    return answer


def error_of(guest, kind, payload, **ids) -> bytes:
    answer = reply(guest, kind, payload, **ids)
    assert answer.type == XsType.error, answer
    return answer.payload


def test_read_answers_the_value_without_a_nul_and_echoes_the_ids(guest):
    assert reply(guest, XsType.read, b"name\0", req_id=41) == Message(
        XsType.read, 41, 0, b"guest")
    assert reply(guest, XsType.read, b"/local/domain/1/domid\0").payload == b"1"


def test_write_makes_the_missing_parents_and_acks(guest):
    assert reply(guest, XsType.write, b"data/a/b\0x\0y") == Message(XsType.write, 7, 0, b"OK\0")
    assert reply(guest, XsType.read, b"data/a/b\0").payload == b"x\0y"
    assert reply(guest, XsType.read, b"data/a\0").payload == b""


def test_directory_lists_children_in_the_order_they_were_made(guest):
    for name in (b"zeta", b"alpha", b"mid"):
        guest.request(XsType.write, b"data/" + name + b"\0v")
    assert reply(guest, XsType.directory, b"data\0").payload == b"zeta\0alpha\0mid\0"
    assert reply(guest, XsType.directory, b"data/zeta\0").payload == b""


def test_mkdir_makes_an_empty_node_and_is_no_error_on_an_existing_one(guest):
    assert reply(guest, XsType.mkdir, b"data/d\0").payload == b"OK\0"
    assert reply(guest, XsType.mkdir, b"data/d\0").payload == b"OK\0"
    assert reply(guest, XsType.read, b"data/d\0").payload == b""


def test_rm_removes_a_subtree_and_tolerates_an_absent_node_but_not_an_absent_parent(guest):
    guest.request(XsType.write, b"data/t/u\0v")
    assert reply(guest, XsType.rm, b"data/t\0").payload == b"OK\0"
    assert error_of(guest, XsType.read, b"data/t/u\0") == b"ENOENT\0"
    assert reply(guest, XsType.rm, b"data/t\0").payload == b"OK\0"
    assert error_of(guest, XsType.rm, b"data/no/such\0") == b"ENOENT\0"


def test_get_domain_path_answers_local_domain_n(guest):
    assert reply(guest, XsType.get_domain_path, b"7\0").payload == b"/local/domain/7\0"
    assert error_of(guest, XsType.get_domain_path, b"x\0") == b"EINVAL\0"


def test_get_perms_and_set_perms_on_a_node_the_guest_owns(guest):
    guest.request(XsType.write, b"data/p\0v")
    assert reply(guest, XsType.get_perms, b"data/p\0").payload == b"n1\0"
    assert reply(guest, XsType.set_perms, b"data/p\0n1\0r0\0").payload == b"OK\0"
    assert reply(guest, XsType.get_perms, b"data/p\0").payload == b"n1\0r0\0"


def test_a_guest_reads_its_backend_but_cannot_write_it(guest):
    back = b"/local/domain/0/backend/vbd/1/51712/state"
    assert reply(guest, XsType.read, back + b"\0").payload == b"1"
    assert error_of(guest, XsType.write, back + b"\0" + b"4") == b"EACCES\0"


def test_a_guest_may_not_give_a_node_away_or_change_one_it_does_not_own(guest):
    guest.request(XsType.write, b"data/p\0v")
    assert error_of(guest, XsType.set_perms, b"data/p\0n2\0") == b"EPERM\0"
    assert error_of(guest, XsType.set_perms, b"name\0b1\0") == b"EACCES\0"


@pytest.mark.parametrize("kind, payload, name", [
    (XsType.read, b"data/missing\0", b"ENOENT"),
    (XsType.read, b"/vm\0", b"EACCES"),
    (XsType.write, b"/local/domain/2/x\0v", b"EACCES"),  # dom0's, not the guest's
    (XsType.read, b"bad path!\0", b"EINVAL"),
    (XsType.read, b"data//x\0", b"EINVAL"),
    (XsType.read, b"data/\0", b"EINVAL"),
    (XsType.read, b"no-nul", b"EINVAL"),
    (XsType.rm, b"/\0", b"EINVAL"),
    (XsType.mkdir, b"name\0", b"EACCES"),  # exists, but is not the guest's to change
    (XsType.rm, b"name\0", b"EACCES"),
    (XsType.write, b"data/big\0" + b"v" * (MAX_ENTRY_SIZE + 1), b"ENOSPC"),
    (XsType.introduce, b"2\0" b"5\0" b"6\0", b"EACCES"),  # domain 0's request
    (XsType.directory_part, b"data\0" b"0\0", b"ENOSYS"),
    (99, b"", b"ENOSYS"),
    (XsType.unwatch, b"data\0tok\0", b"ENOENT"),
    (XsType.transaction_end, b"T\0", b"ENOENT"),
])
def test_errors_are_answered_by_name(guest, kind, payload, name):
    assert error_of(guest, kind, payload) == name + b"\0"


def test_a_request_in_an_unknown_transaction_is_enoent(guest):
    assert reply(guest, XsType.read, b"name\0", tx_id=99) == Message(
        XsType.error, 7, 99, b"ENOENT\0")


def test_a_reply_longer_than_the_payload_limit_is_e2big(guest):
    for i in range(XENSTORE_PAYLOAD_MAX // 8 + 1):
        guest.request(XsType.mkdir, b"data/node%03d\0" % i)
    assert error_of(guest, XsType.directory, b"data\0") == b"E2BIG\0"


def test_domain_zero_reads_and_writes_anywhere(dom0):
    dom0.write("/local/domain/1/name", b"renamed")
    assert dom0.read("/local/domain/1/name") == b"renamed"
    dom0.set_perms("/local/domain/1/name", (Perm("n", 0),))
    assert dom0.read("/local/domain/1/name") == b"renamed"
