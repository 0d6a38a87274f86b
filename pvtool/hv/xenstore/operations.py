"""One function per XenStore request type (docs/misc/xenstore.txt): each takes the
store, the connection, its transaction (or None) and the request, and returns the
reply's payload or raises XenStoreError with the errno name cxenstored answers."""

from collections.abc import Callable
from typing import TYPE_CHECKING

from pvtool.abi.xs_wire import XsType
from pvtool.hv.xenstore import paths
from pvtool.hv.xenstore.errors import XenStoreError
from pvtool.hv.xenstore.perms import encode_perms, parse_perms
from pvtool.hv.xenstore.transactions import MAX_OPEN, Transaction
from pvtool.hv.xenstore.wire import OK, Message, path_and_value, split_strings

if TYPE_CHECKING:
    from pvtool.hv.xenstore.connection import Connection
    from pvtool.hv.xenstore.store import XenStore

Operation = Callable[["XenStore", "Connection", Transaction | None, Message], bytes]


def _path(conn: "Connection", request: Message) -> str:
    (raw,) = split_strings(request.payload, 1)
    return paths.canonical(raw, conn.domid)


def read(store, conn, tx, request) -> bytes:
    return store.view(tx).read(_path(conn, request), conn.domid)


def directory(store, conn, tx, request) -> bytes:
    children = store.view(tx).directory(_path(conn, request), conn.domid)
    return b"".join(name.encode() + b"\0" for name in children)


def get_perms(store, conn, tx, request) -> bytes:
    return encode_perms(store.view(tx).get_perms(_path(conn, request), conn.domid))


def write(store, conn, tx, request) -> bytes:
    raw, value = path_and_value(request.payload)
    path = paths.canonical(raw, conn.domid)
    return store.changed(tx, store.view(tx).write(path, value, conn.domid))


def mkdir(store, conn, tx, request) -> bytes:
    return store.changed(tx, store.view(tx).mkdir(_path(conn, request), conn.domid))


def rm(store, conn, tx, request) -> bytes:
    return store.changed(tx, store.view(tx).rm(_path(conn, request), conn.domid))


def set_perms(store, conn, tx, request) -> bytes:
    raw, *words = request.payload.split(b"\0")
    if words[-1:] != [b""]:
        raise XenStoreError("EINVAL", "SET_PERMS: no NUL after the last permission")
    path = paths.canonical(raw, conn.domid)
    return store.changed(tx, store.view(tx).set_perms(path, parse_perms(words[:-1]),
                                                      conn.domid))


def watch(store, conn, tx, request) -> bytes:
    """Set the watch and ack it; the event it fires at once follows the ack
    (xenstored_watch.c do_watch)."""
    raw, token = split_strings(request.payload, 2)
    added = store.watches.add(conn, raw, token)
    store.after_reply.append((conn, added.initial_path(), token))
    return OK


def unwatch(store, conn, tx, request) -> bytes:
    raw, token = split_strings(request.payload, 2)
    store.watches.remove(conn, raw, token)
    return OK


def reset_watches(store, conn, tx, request) -> bytes:
    store.disconnect(conn)
    return OK


def transaction_start(store, conn, tx, request) -> bytes:
    split_strings(request.payload, 1)
    if tx is not None:
        raise XenStoreError("EBUSY", "TRANSACTION_START inside a transaction")
    if len(conn.transactions) >= MAX_OPEN:
        raise XenStoreError("ENOSPC", f"{MAX_OPEN} transactions open")
    return b"%d\0" % store.start_transaction(conn)


def transaction_end(store, conn, tx, request) -> bytes:
    (verdict,) = split_strings(request.payload, 1)
    if tx is None:
        raise XenStoreError("ENOENT", "TRANSACTION_END outside a transaction")
    if verdict not in (b"T", b"F"):
        raise XenStoreError("EINVAL", f"TRANSACTION_END {verdict[:8]!r}")
    del conn.transactions[request.tx_id]
    if verdict == b"T":
        store.fire(tx.commit(store.tree))
    return OK


def get_domain_path(store, conn, tx, request) -> bytes:
    (domid,) = split_strings(request.payload, 1)
    if not domid.isdigit() or int(domid) > 0xFFFF:
        raise XenStoreError("EINVAL", f"domain {domid[:8]!r}")
    return paths.domain_path(int(domid)).encode() + b"\0"


OPERATIONS: dict[int, Operation] = {
    XsType.read: read, XsType.directory: directory, XsType.get_perms: get_perms,
    XsType.write: write, XsType.mkdir: mkdir, XsType.rm: rm, XsType.set_perms: set_perms,
    XsType.watch: watch, XsType.unwatch: unwatch, XsType.reset_watches: reset_watches,
    XsType.transaction_start: transaction_start, XsType.transaction_end: transaction_end,
    XsType.get_domain_path: get_domain_path,
}
# The toolstack's requests (xenstored_core.c: domain 0 only, EACCES for others).
PRIVILEGED_ONLY = frozenset({XsType.control, XsType.introduce, XsType.release,
                             XsType.is_domain_introduced, XsType.resume, XsType.set_target,
                             XsType.set_quota, XsType.get_quota})
