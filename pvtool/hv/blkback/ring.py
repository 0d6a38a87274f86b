"""The backend's end of a one-page shared ring (xen/include/public/io/ring.h): the
frontend produces requests at req_prod, the backend consumes them (req_cons, its
own) and produces responses into the same slots (rsp_prod_pvt, its own, published
as rsp_prod).

Notifications follow the ring's hold-off rule. After publishing responses the
backend raises the frontend's port only if the frontend's rsp_event lies among the
new ones (RING_PUSH_RESPONSES_AND_CHECK_NOTIFY). Once it has taken every request it
re-arms req_event = req_cons + 1, so the frontend's next push notifies, and looks
once more (RING_FINAL_CHECK_FOR_REQUESTS): without the re-arm a frontend following
the rule stops notifying after its first request."""

from pvtool.abi.blkif import SRING_HEADER, ring_entries
from pvtool.abi.layouts import Layout
from pvtool.machine.memory import GuestMemory
from pvtool.x86.paging import PAGE_SIZE

INDEX_MASK = 0xFFFFFFFF  # RING_IDX: free-running u32 indexes


def _u32(value: int) -> int:
    return value & INDEX_MASK


class BackRing:
    """The shared ring at machine address PAGE, whose slots hold REQUEST or RESPONSE
    (a union: the larger sets the slot's size)."""

    def __init__(self, memory: GuestMemory, page: int, request: Layout, response: Layout):
        self.memory = memory
        self.page = page
        self.request_layout = request
        self.response_layout = response
        self.slot_size = max(request.size, response.size)
        self.size = ring_entries(PAGE_SIZE, self.slot_size)
        self.req_cons = 0
        self.rsp_prod_pvt = 0

    def _index(self, name: str) -> int:
        return self.memory.read_u32(self.page + SRING_HEADER.offset(name))

    def _set_index(self, name: str, value: int) -> None:
        self.memory.write_u32(self.page + SRING_HEADER.offset(name), _u32(value))

    def _slot(self, index: int) -> int:
        return self.page + SRING_HEADER.size + (index & (self.size - 1)) * self.slot_size

    @property
    def req_prod(self) -> int:
        return self._index("req_prod")

    def overflowed(self, req_prod: int) -> bool:
        """RING_REQUEST_PROD_OVERFLOW: the frontend claims more requests than the ring
        can hold beside the responses not yet published."""
        return _u32(req_prod - self.rsp_prod_pvt) > self.size

    def unconsumed(self, req_prod: int) -> int:
        """RING_HAS_UNCONSUMED_REQUESTS: requests up to REQ_PROD not yet taken, at most
        the slots not holding an unpublished response."""
        return min(_u32(req_prod - self.req_cons),
                   self.size - _u32(self.req_cons - self.rsp_prod_pvt))

    def take_request(self) -> bytes:
        """RING_COPY_REQUEST: the next request copied out of the shared page before
        anything looks at it, so the frontend cannot change it while it is checked."""
        data = self.memory.read_phys(self._slot(self.req_cons), self.request_layout.size)
        self.req_cons = _u32(self.req_cons + 1)
        return data

    def put_response(self, data: bytes) -> None:
        self.memory.write_phys(self._slot(self.rsp_prod_pvt), data)
        self.rsp_prod_pvt = _u32(self.rsp_prod_pvt + 1)

    def push_responses(self) -> bool:
        """RING_PUSH_RESPONSES_AND_CHECK_NOTIFY: publish rsp_prod; whether the
        frontend asked to hear of these responses."""
        old, new = self._index("rsp_prod"), self.rsp_prod_pvt
        self._set_index("rsp_prod", new)
        return _u32(new - self._index("rsp_event")) < _u32(new - old)

    def final_check_for_requests(self) -> bool:
        """RING_FINAL_CHECK_FOR_REQUESTS: whether requests wait; if none, re-arm
        req_event first and look again."""
        if self.unconsumed(self.req_prod):
            return True
        self._set_index("req_event", self.req_cons + 1)
        return bool(self.unconsumed(self.req_prod))
