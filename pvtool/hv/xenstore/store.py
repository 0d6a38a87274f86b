"""The XenStore daemon's core: one tree, the watches on it, and the requests of every
connection, answered as cxenstored answers them (xenstored_core.c process_message).

A request names a transaction in its tx_id (0 for none); an unknown one is ENOENT. Its
reply carries the request's type, req_id and tx_id, or XS_ERROR with an errno name.
Watch events for a change are queued before the reply to the change, as do_write
fires the watches before it acks. Events for in-process backends run their callbacks
only after the request is answered, so a callback that writes in turn never runs
inside another request."""

from collections.abc import Callable

from pvtool.abi.xen import HARDWARE_DOMID
from pvtool.abi.xs_wire import XENSTORE_PAYLOAD_MAX, XsType
from pvtool.hv.xenstore.connection import Connection
from pvtool.hv.xenstore.errors import XenStoreError
from pvtool.hv.xenstore.operations import OPERATIONS, PRIVILEGED_ONLY
from pvtool.hv.xenstore.transactions import Transaction
from pvtool.hv.xenstore.tree import Change, Tree
from pvtool.hv.xenstore.watches import Watches
from pvtool.hv.xenstore.wire import OK, Message


class XenStore:
    def __init__(self):
        self.tree = Tree()
        self.watches = Watches()
        self.last_tx_id = 0
        self.callbacks: list[Callable[[], None]] = []  # backends' watch callbacks, due
        # Watch events that follow the reply: a new watch's first (connection, path, token)
        self.after_reply: list[tuple[Connection, bytes, bytes]] = []
        self._running_callbacks = False

    def handle(self, conn: Connection, request: Message) -> None:
        """Answer REQUEST from CONN. The caller runs the backends' callbacks it made
        due (run_callbacks) once it has what it needs of the reply."""
        try:
            payload = self._answer(conn, request)
            if len(payload) > XENSTORE_PAYLOAD_MAX:
                raise XenStoreError("E2BIG", f"a reply of {len(payload)} bytes")
            conn.deliver(request.reply(payload))
            for event in self.after_reply:
                self.send_event(*event)
        except XenStoreError as error:
            conn.deliver(request.error(error.name))
        self.after_reply.clear()

    def _answer(self, conn: Connection, request: Message) -> bytes:
        operation = OPERATIONS.get(request.type)
        if request.type in PRIVILEGED_ONLY and conn.domid != HARDWARE_DOMID:
            raise XenStoreError("EACCES", f"{XsType(request.type).name} is domain 0's")
        if operation is None:
            raise XenStoreError("ENOSYS", f"message type {request.type}")
        tx = None
        if request.tx_id:
            tx = conn.transactions.get(request.tx_id)
            if tx is None:
                raise XenStoreError("ENOENT", f"transaction {request.tx_id}")
        return operation(self, conn, tx, request)

    # -- what operations use -------------------------------------------------------------
    def view(self, tx: Transaction | None) -> Tree:
        return self.tree if tx is None else tx.view

    def changed(self, tx: Transaction | None, changes: list[Change]) -> bytes:
        """Fire CHANGES now, or at commit when made inside TX; the ack."""
        if tx is None:
            self.fire(changes)
        else:
            tx.changes.extend(changes)
        return OK

    def fire(self, changes: list[Change]) -> None:
        for path, removed in changes:
            for watch, event_path in self.watches.fired_by(path, removed):
                self.send_event(watch.conn, watch.event_path(event_path),
                                watch.token)

    def send_event(self, conn: Connection, path: bytes, token: bytes) -> None:
        conn.deliver(Message(XsType.watch_event, 0, 0, path + b"\0" + token + b"\0"))

    def start_transaction(self, conn: Connection) -> int:
        self.last_tx_id = self.last_tx_id % 0xFFFFFFFF + 1
        conn.transactions[self.last_tx_id] = Transaction(self.tree)
        return self.last_tx_id

    def disconnect(self, conn: Connection) -> None:
        self.watches.drop(conn)
        conn.transactions.clear()

    def run_callbacks(self) -> None:
        """The backends' due callbacks, including those they make due themselves."""
        if self._running_callbacks:
            return
        self._running_callbacks = True
        try:
            while self.callbacks:
                self.callbacks.pop(0)()
        finally:
            self._running_callbacks = False
