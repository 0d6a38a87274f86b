"""The guest's half of the store ring, in Python, for the daemon's tests: a page of
memory that refuses any access outside itself, and a client that streams requests
into req[] and takes replies out of rsp[] with the indexes where a test puts them."""

import struct

from pvtool.abi.layouts import XENSTORE_DOMAIN_INTERFACE as RING
from pvtool.abi.xs_wire import XENSTORE_RING_SIZE
from pvtool.hv.xenstore.ring import StoreRing
from pvtool.hv.xenstore.store import XenStore
from pvtool.hv.xenstore.wire import Message, MessageReader

PAGE = 0x5000  # the ring page's physical address in these tests
PAGE_SIZE = 4096


class PageMemory:
    """Physical memory that is one page: an access outside it fails the test."""

    def __init__(self):
        self.page = bytearray(PAGE_SIZE)

    def _at(self, addr: int, size: int) -> int:
        assert addr >= PAGE and addr + size <= PAGE + PAGE_SIZE, f"outside the page: {addr:#x}"
        return addr - PAGE

    def read_phys(self, addr: int, size: int) -> bytes:
        at = self._at(addr, size)
        return bytes(self.page[at:at + size])

    def write_phys(self, addr: int, data: bytes) -> None:
        at = self._at(addr, len(data))
        self.page[at:at + len(data)] = data

    def read_u32(self, addr: int) -> int:
        return struct.unpack("<I", self.read_phys(addr, 4))[0]

    def write_u32(self, addr: int, value: int) -> None:
        self.write_phys(addr, struct.pack("<I", value))


class GuestSide:
    """A domain's ring to STORE: `send` streams bytes (notifying when req[] is full),
    `receive` takes every message the daemon has put in rsp[]."""

    def __init__(self, store: XenStore | None = None, domid: int = 1, start: int = 0):
        self.store = store or XenStore()
        self.memory = PageMemory()
        for name in ("req_cons", "req_prod", "rsp_cons", "rsp_prod"):
            self.poke(name, start)
        self.signals = 0
        self.ring = StoreRing(self.store, domid, self.memory, PAGE, self._signal)
        self.reader = MessageReader()

    def _signal(self) -> None:
        self.signals += 1

    def peek(self, name: str) -> int:
        return self.memory.read_u32(PAGE + RING.offset(name))

    def poke(self, name: str, value: int) -> None:
        self.memory.write_u32(PAGE + RING.offset(name), value & 0xFFFFFFFF)

    def send(self, data: bytes, notify: bool = True) -> bool:
        """Stream DATA into req[], signalling whenever it fills; False if the daemon
        left it full."""
        view = memoryview(data)
        while view:
            if self.full():
                self.ring.notify()
                if self.full():
                    return False
            prod = self.peek("req_prod")
            room = XENSTORE_RING_SIZE - ((prod - self.peek("req_cons")) & 0xFFFFFFFF)
            at = prod % XENSTORE_RING_SIZE
            count = min(room, len(view), XENSTORE_RING_SIZE - at)
            req = RING.offset("req") + at
            self.memory.page[req:req + count] = view[:count]
            self.poke("req_prod", prod + count)
            view = view[count:]
        if notify:
            self.ring.notify()
        return True

    def full(self) -> bool:
        return (self.peek("req_prod") - self.peek("req_cons")) & 0xFFFFFFFF == XENSTORE_RING_SIZE

    def take(self) -> bytes:
        """The bytes in rsp[]; the guest then signals that it made room."""
        cons, prod = self.peek("rsp_cons"), self.peek("rsp_prod")
        rsp = RING.offset("rsp")
        data = bytes(self.memory.page[rsp + (cons + i) % XENSTORE_RING_SIZE]
                     for i in range((prod - cons) & 0xFFFFFFFF))
        self.poke("rsp_cons", prod)
        self.ring.notify()
        return data

    def receive(self) -> list[Message]:
        messages = []
        while chunk := self.take():
            messages += self.reader.feed(chunk)
        return messages

    def request(self, kind: int, payload: bytes, req_id: int = 7, tx_id: int = 0) -> list[Message]:
        self.send(Message(kind, req_id, tx_id, payload).encode())
        return self.receive()
