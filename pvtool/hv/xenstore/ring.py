"""A domain's connection to the store: the ring page start_info.store_mfn names
(struct xenstore_domain_interface, io/xs_wire.h; docs/misc/xenstore-ring.txt).

The guest streams requests into req[] and moves req_prod; the daemon streams replies
and watch events into rsp[] and moves rsp_prod. Indexes run free as u32, byte x of a
stream lives at x & 1023, and whoever moves an index signals the event channel. A
message is longer than the ring, so both sides pass it in pieces: requests are put
back together by wire.MessageReader; replies wait in `output` while rsp[] is full and
go out as the guest makes room (it signals after consuming). Every access is masked
into the page, so nothing a guest writes there can make the daemon touch memory
outside it.

What ends a connection, as cxenstored's handle_input and domain_can_read decide: an
announced payload over XENSTORE_PAYLOAD_MAX (XENSTORE_ERROR_PROTO) or an index pair
more than a ring apart (XENSTORE_ERROR_RINGIDX). The daemon then writes the reason into
`error` (it advertises XENSTORE_SERVER_FEATURE_ERROR), stops serving the ring and
signals once; the domain itself runs on."""

from collections.abc import Callable
from typing import Protocol

from pvtool.abi.layouts import XENSTORE_DOMAIN_INTERFACE as RING
from pvtool.abi.xs_wire import (
    XENSTORE_PAYLOAD_MAX,
    XENSTORE_RING_SIZE,
    XENSTORE_SERVER_FEATURE_ERROR,
    XenstoreRingError,
)
from pvtool.hv.xenstore.connection import Connection
from pvtool.hv.xenstore.store import XenStore
from pvtool.hv.xenstore.wire import HEADER_SIZE, Message, MessageReader, OversizedMessage

MASK = XENSTORE_RING_SIZE - 1
U32 = 0xFFFFFFFF
# Requests wait in req[] while this much output is queued: a guest that never reads
# its replies stops being served instead of growing the daemon's queue (oxenstored
# bounds outstanding replies the same way).
MAX_QUEUED_OUTPUT = 4 * (HEADER_SIZE + XENSTORE_PAYLOAD_MAX)


class PhysicalMemory(Protocol):
    def read_phys(self, addr: int, size: int) -> bytes: ...
    def write_phys(self, addr: int, data: bytes) -> None: ...
    def read_u32(self, addr: int) -> int: ...
    def write_u32(self, addr: int, value: int) -> None: ...


class StoreRing(Connection):
    def __init__(self, store: XenStore, domid: int, memory: PhysicalMemory, page: int,
                 signal: Callable[[], None]):
        """STORE's connection for DOMID over the ring at physical address PAGE;
        SIGNAL raises the domain's store event channel."""
        super().__init__(domid)
        self.store = store
        self.memory = memory
        self.page = page
        self.signal = signal
        self.reader = MessageReader()
        self.output = bytearray()
        self.closed: XenstoreRingError | None = None
        memory.write_u32(page + RING.offset("server_features"), XENSTORE_SERVER_FEATURE_ERROR)

    def notify(self) -> None:
        """The guest signalled: take its requests, answer them, send what fits."""
        if self.closed is None:
            self._take_requests()
        self.flush()
        self.store.run_callbacks()

    def deliver(self, message: Message) -> None:
        if self.closed is None:
            self.output += message.encode()
            self.flush()

    def flush(self) -> None:
        """Copy queued output into rsp[] as far as the guest left room."""
        if self.closed is not None or not self.output:
            return
        cons, prod = self._index("rsp_cons"), self._index("rsp_prod")
        if (prod - cons) & U32 > XENSTORE_RING_SIZE:
            self._close(XenstoreRingError.ringidx)
            return
        count = min(XENSTORE_RING_SIZE - ((prod - cons) & U32), len(self.output))
        if count:
            self._copy_in(RING.offset("rsp"), prod, self.output[:count])
            del self.output[:count]
            self._set_index("rsp_prod", prod + count)
            self.signal()

    def _take_requests(self) -> None:
        cons, prod = self._index("req_cons"), self._index("req_prod")
        available = (prod - cons) & U32
        if available > XENSTORE_RING_SIZE:
            self._close(XenstoreRingError.ringidx)
            return
        start = cons
        while available and self.closed is None and len(self.output) <= MAX_QUEUED_OUTPUT:
            take = min(available, self.reader.wanted)
            chunk = self._copy_out(RING.offset("req"), cons, take)
            cons, available = (cons + take) & U32, available - take
            try:
                messages = self.reader.feed(chunk)
            except OversizedMessage:
                self._close(XenstoreRingError.proto)
                return
            for message in messages:
                self.store.handle(self, message)
        if cons != start:
            self._set_index("req_cons", cons)
            self.signal()

    def _close(self, reason: XenstoreRingError) -> None:
        """Stop serving the ring (cxenstored's ignore_connection), saying why."""
        self.closed = reason
        self.output.clear()
        self.store.disconnect(self)
        self.memory.write_u32(self.page + RING.offset("error"), reason)
        self.signal()

    # -- the page ------------------------------------------------------------------------
    def _index(self, name: str) -> int:
        return self.memory.read_u32(self.page + RING.offset(name))

    def _set_index(self, name: str, value: int) -> None:
        self.memory.write_u32(self.page + RING.offset(name), value & U32)

    def _copy_out(self, ring: int, index: int, count: int) -> bytes:
        data = self.memory.read_phys(self.page + ring, XENSTORE_RING_SIZE)
        return bytes(data[(index + i) & MASK] for i in range(count))

    def _copy_in(self, ring: int, index: int, data: bytes) -> None:
        first = min(len(data), XENSTORE_RING_SIZE - (index & MASK))
        self.memory.write_phys(self.page + ring + (index & MASK), bytes(data[:first]))
        if first < len(data):
            self.memory.write_phys(self.page + ring, bytes(data[first:]))
