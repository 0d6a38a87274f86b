"""The store as an in-process backend sees it: a connection of domain 0 (or another
domain id) whose requests are Python calls. Each call goes through the same
operations as a guest's ring request, so it gets the same answers, raised as
XenStoreError; a watch's callback runs after the request that fired it is answered.

    xs = StoreClient(store)
    xs.write("/local/domain/0/backend/vbd/1/51712/state", b"2")
    xs.watch("/local/domain/1/device/vbd/51712/state", on_frontend_state)

A backend following a frontend's XenbusState (io/xenbus.h) watches the frontend's
`state` node and writes its own."""

from collections.abc import Callable

from pvtool.abi.xen import HARDWARE_DOMID
from pvtool.abi.xs_wire import XsType
from pvtool.hv.xenstore.connection import Connection
from pvtool.hv.xenstore.errors import XenStoreError
from pvtool.hv.xenstore.perms import Perms, encode_perms, parse_perms
from pvtool.hv.xenstore.store import XenStore
from pvtool.hv.xenstore.wire import Message, split_strings

WatchCallback = Callable[[str], None]  # called with the changed path


class StoreClient(Connection):
    def __init__(self, store: XenStore, domid: int = HARDWARE_DOMID):
        super().__init__(domid)
        self.store = store
        self.callbacks: dict[bytes, WatchCallback] = {}  # by token
        self._reply: Message | None = None
        self._tx_id = 0

    def read(self, path: str) -> bytes:
        return self._request(XsType.read, path.encode() + b"\0")

    def directory(self, path: str) -> list[str]:
        listing = self._request(XsType.directory, path.encode() + b"\0")
        return [name.decode() for name in listing.split(b"\0")[:-1]]

    def write(self, path: str, value: bytes) -> None:
        self._request(XsType.write, path.encode() + b"\0" + value)

    def mkdir(self, path: str) -> None:
        self._request(XsType.mkdir, path.encode() + b"\0")

    def rm(self, path: str) -> None:
        self._request(XsType.rm, path.encode() + b"\0")

    def get_perms(self, path: str) -> Perms:
        listing = self._request(XsType.get_perms, path.encode() + b"\0")
        return parse_perms(listing.split(b"\0")[:-1])

    def set_perms(self, path: str, perms: Perms) -> None:
        self._request(XsType.set_perms, path.encode() + b"\0" + encode_perms(perms))

    def watch(self, path: str, callback: WatchCallback) -> bytes:
        """Watch PATH: CALLBACK runs once now and after every change at or below it.
        Returns the token that unwatch takes."""
        token = b"client-%d" % len(self.callbacks)
        while token in self.callbacks:
            token += b"+"
        self.callbacks[token] = callback
        self._request(XsType.watch, path.encode() + b"\0" + token + b"\0")
        return token

    def unwatch(self, path: str, token: bytes) -> None:
        self._request(XsType.unwatch, path.encode() + b"\0" + token + b"\0")
        del self.callbacks[token]

    def transaction(self) -> "StoreTransaction":
        return StoreTransaction(self)

    def deliver(self, message: Message) -> None:
        if message.type != XsType.watch_event:
            self._reply = message
            return
        path, token = split_strings(message.payload, 2)
        callback = self.callbacks.get(token)
        if callback is not None:
            self.store.callbacks.append(lambda: callback(path.decode()))

    def _request(self, kind: XsType, payload: bytes) -> bytes:
        self._reply = None
        self.store.handle(self, Message(kind, 0, self._tx_id, payload))
        reply = self._reply
        self.store.run_callbacks()
        if reply.type == XsType.error:
            raise XenStoreError(reply.payload.rstrip(b"\0").decode())
        return reply.payload


class StoreTransaction:
    """`with client.transaction():` runs the client's requests in one transaction,
    committed at the end (XenStoreError EAGAIN if it conflicted; the caller retries)
    or aborted if the block raised."""

    def __init__(self, client: StoreClient):
        self.client = client

    def __enter__(self) -> StoreClient:
        reply = self.client._request(XsType.transaction_start, b"\0")
        self.client._tx_id = int(reply.rstrip(b"\0"))
        return self.client

    def __exit__(self, kind, value, traceback) -> None:
        verdict = b"F\0" if kind is not None else b"T\0"
        try:
            self.client._request(XsType.transaction_end, verdict)
        finally:
            self.client._tx_id = 0
